use crate::error::{Result, StoreError};
use crate::model::CounselorCategory;
use crate::rows::{to_micros, CategoryRow, CATEGORY_COLUMNS};
use crate::store::{with_pool, Store};
use chrono::Utc;
use domain::{Category, CategoryId};
use sqlx::AssertSqlSafe;

/// How a counselor is first configured: `(category, description, icon name, system prompt)`.
/// [`Store::migrate`] inserts these when a category is missing; later edits are kept.
pub const DEFAULT_CATEGORIES: [(Category, &str, &str, &str); 6] = [
    (
        Category::Health,
        "Mental health, stress management, wellness, and self-care support",
        "heart-pulse",
        "You are a supportive health counselor specializing in student wellness. Focus on mental health, \
         stress management, sleep hygiene, and healthy habits. Be empathetic and non-judgmental. If a student \
         expresses suicidal ideation, immediately provide the National Suicide Prevention Lifeline: 988.",
    ),
    (
        Category::Career,
        "Career exploration, job search strategies, resume help, and interview prep",
        "briefcase",
        "You are an experienced career counselor helping college students navigate their professional \
         futures. Provide guidance on career paths, job search strategies, resume writing, and interview \
         preparation. Ask probing questions to understand their interests, skills, and goals.",
    ),
    (
        Category::Academic,
        "Study strategies, time management, course selection, and academic planning",
        "graduation-cap",
        "You are an academic advisor specializing in student success. Help with study strategies, time \
         management, course selection, and academic planning. Be encouraging and practical in your advice. \
         Focus on evidence-based learning techniques.",
    ),
    (
        Category::Financial,
        "Budgeting, student loans, financial aid, and money management",
        "dollar-sign",
        "You are a financial counselor educated in personal finance for college students. Provide guidance \
         on budgeting, managing student loans, understanding financial aid, and building healthy money \
         habits. Be non-judgmental about financial situations.",
    ),
    (
        Category::Social,
        "Relationships, communication skills, campus involvement, and social well-being",
        "users",
        "You are a counselor focused on social and interpersonal development. Help students navigate \
         friendships, romantic relationships, roommate conflicts, and campus involvement. Provide \
         communication strategies and encourage healthy social connections.",
    ),
    (
        Category::PersonalDevelopment,
        "Goal setting, self-awareness, life skills, and personal growth",
        "star",
        "You are a personal development coach for college students. Focus on goal setting, self-awareness, \
         building life skills, and fostering personal growth. Help students discover their values, \
         strengths, and areas for development. Be motivating and forward-thinking.",
    ),
];

impl Store {
    pub(crate) async fn seed_categories(&self) -> Result<()> {
        let now = to_micros(Utc::now());
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            for (category, description, icon, prompt) in DEFAULT_CATEGORIES {
                sqlx::query(
                    "INSERT INTO counselor_categories \
                     (id, name, description, icon_name, system_prompt, enabled, display_order, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (name) DO NOTHING",
                )
                .bind(*CategoryId::new().as_uuid())
                .bind(category.name())
                .bind(description)
                .bind(icon)
                .bind(prompt)
                .bind(true)
                .bind(category.display_order() as i64)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The counselors in display order; disabled ones only when asked for.
    pub async fn categories(&self, include_disabled: bool) -> Result<Vec<CounselorCategory>> {
        let filter = if include_disabled {
            ""
        } else {
            "WHERE enabled = TRUE"
        };
        let sql = format!(
            "SELECT {CATEGORY_COLUMNS} FROM counselor_categories {filter} ORDER BY display_order"
        );
        let rows: Vec<CategoryRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        rows.into_iter().map(CounselorCategory::try_from).collect()
    }

    pub async fn category_by_id(&self, id: CategoryId) -> Result<Option<CounselorCategory>> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM counselor_categories WHERE id = $1");
        let row: Option<CategoryRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(CounselorCategory::try_from).transpose()
    }

    pub async fn category(&self, category: Category) -> Result<Option<CounselorCategory>> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM counselor_categories WHERE name = $1");
        let row: Option<CategoryRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(category.name())
                .fetch_optional(pool)
                .await?
        });
        row.map(CounselorCategory::try_from).transpose()
    }

    /// Shows or hides a counselor on the dashboard; its sessions are untouched.
    pub async fn set_category_enabled(
        &self,
        category: Category,
        enabled: bool,
    ) -> Result<CounselorCategory> {
        self.update_category(category, "enabled", enabled).await
    }

    /// Replaces a counselor's system prompt (takes effect for sessions started afterwards).
    pub async fn set_category_prompt(
        &self,
        category: Category,
        prompt: &str,
    ) -> Result<CounselorCategory> {
        if prompt.trim().is_empty() {
            return Err(StoreError::Invalid(
                "system prompt must not be empty".to_owned(),
            ));
        }
        self.update_category(category, "system_prompt", prompt)
            .await
    }

    async fn update_category<V>(
        &self,
        category: Category,
        column: &'static str,
        value: V,
    ) -> Result<CounselorCategory>
    where
        V: for<'q> sqlx::Encode<'q, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'q> sqlx::Encode<'q, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>
            + Send
            + Clone,
    {
        let now = to_micros(Utc::now());
        let sql = format!(
            "UPDATE counselor_categories SET {column} = $1, updated_at = $2 WHERE name = $3 \
             RETURNING {CATEGORY_COLUMNS}"
        );
        let row: Option<CategoryRow> = with_pool!(self, writer, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(value.clone())
                .bind(now)
                .bind(category.name())
                .fetch_optional(pool)
                .await?
        });
        row.map(CounselorCategory::try_from)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }
}
