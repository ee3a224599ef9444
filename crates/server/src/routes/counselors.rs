use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct CounselorCategoryView {
    #[schema(value_type = uuid::Uuid)]
    pub id: domain::CategoryId,
    #[schema(example = "Health")]
    pub name: String,
    pub description: String,
    #[schema(example = "heart-pulse")]
    pub icon_name: String,
    pub enabled: bool,
}

impl From<store::CounselorCategory> for CounselorCategoryView {
    fn from(c: store::CounselorCategory) -> Self {
        CounselorCategoryView {
            id: c.id,
            name: c.name,
            description: c.description,
            icon_name: c.icon_name,
            enabled: c.enabled,
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_categories))
        .routes(routes!(get_category))
}

/// The enabled counselor categories, in display order.
#[utoipa::path(get, path = "/counselors/categories", tag = "Counselors",
    responses(
        (status = 200, description = "Enabled categories", body = [CounselorCategoryView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_categories(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<CounselorCategoryView>>, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    Ok(Json(
        state
            .categories
            .enabled()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// One enabled counselor category.
#[utoipa::path(get, path = "/counselors/categories/{category_id}", tag = "Counselors",
    params(("category_id" = uuid::Uuid, Path, description = "The category's id")),
    responses(
        (status = 200, description = "The category", body = CounselorCategoryView),
        (status = 404, description = "No such enabled category (COUNSELOR_001)", body = ErrorBody),
        (status = 422, description = "Not a UUID (VALIDATION_001)", body = ErrorBody),
    ))]
pub async fn get_category(
    State(state): State<AppState>,
    user: AuthUser,
    Path(raw_id): Path<String>,
) -> Result<Json<CounselorCategoryView>, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let id = raw_id
        .parse()
        .map_err(|_| ApiError::validation("category_id", "must be a UUID"))?;
    let category = state
        .categories
        .enabled_by_id(id)
        .await?
        .ok_or(ApiError::CategoryNotFound)?;
    Ok(Json(category.into()))
}
