use crate::config::Config;
use crate::jobs::purge_expired_transcripts;

pub(super) async fn run(
    store: &store::Store,
    config: &Config,
    dry_run: bool,
) -> anyhow::Result<()> {
    let report =
        purge_expired_transcripts(store, config.transcript_retention_days, dry_run).await?;
    let verb = if dry_run { "would erase" } else { "erased" };
    println!(
        "{verb} the transcripts of {} sessions ({} messages) older than {} days",
        report.sessions, report.messages, config.transcript_retention_days
    );
    Ok(())
}
