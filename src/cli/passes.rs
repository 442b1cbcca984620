//! One-shot passes from the command line (`sync`, `reconcile`), with a progress line on a
//! terminal and a summary at the end.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::{config::Config, daemon, object::ObjectKind, request_books, scheduler};

pub(super) async fn sync(config: Config, objects: Vec<ObjectKind>, full: bool, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let syncer = daemon::syncer(&config, shutdown).await?;
    let objects = if objects.is_empty() { config.sync.objects.clone() } else { objects };
    let bar = progress_bar(&syncer);
    let reading = if full { crate::sync::Reading::Everything } else { crate::sync::Reading::Changes };
    let summary = scheduler::poll_all(&syncer, &objects, reading).await;
    bar.finish();
    request_books::remember_rate(&config.partnerstack, syncer.api(), syncer.store()).await;
    request_books::tally_requests(syncer.api(), syncer.store(), &mut request_books::nothing_tallied()).await;
    print_summary(&summary)
}

/// A live line on a terminal while a long pass (a backfill) runs: pages, records, the rate
/// of the last few seconds ([`crate::live_rate`]).
/// Nothing when stderr is not a terminal.
struct ProgressLine {
    bar: Option<indicatif::ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressLine {
    fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(syncer: &crate::sync::Syncer) -> ProgressLine {
    use std::{io::IsTerminal, sync::atomic::Ordering};
    if !std::io::stderr().is_terminal() {
        return ProgressLine { bar: None, task: None };
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let progress = syncer.progress();
    let ticker = bar.clone();
    let started = std::time::Instant::now();
    let task = tokio::spawn(async move {
        let mut rate = crate::live_rate::LiveRate::default();
        loop {
            let records = progress.records.load(Ordering::Relaxed);
            let eta = progress.eta(started.elapsed()).map(|d| format!(" | ETA {}s", d.as_secs())).unwrap_or_default();
            ticker.set_message(format!(
                "pages {} | records {} ({:.0}/s over the last {}s) | rows written {} | events {}{eta}",
                progress.pages.load(Ordering::Relaxed),
                records,
                rate.sample(tokio::time::Instant::now(), records),
                crate::live_rate::WINDOW.as_secs(),
                progress.written.rows.total(),
                progress.written.events.total(),
            ));
            ticker.tick();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    ProgressLine { bar: Some(bar), task: Some(task) }
}

pub(super) async fn reconcile(config: Config, objects: Vec<ObjectKind>, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let syncer = daemon::syncer(&config, shutdown).await?;
    let objects = if objects.is_empty() { config.sync.objects.clone() } else { objects };
    let bar = progress_bar(&syncer);
    let summary = scheduler::reconcile_all(&syncer, &objects).await;
    bar.finish();
    request_books::tally_requests(syncer.api(), syncer.store(), &mut request_books::nothing_tallied()).await;
    print_summary(&summary)
}

fn print_summary(summary: &scheduler::PassSummary) -> anyhow::Result<ExitCode> {
    for r in &summary.reports {
        if r.held_elsewhere {
            println!("{:<22} skipped: another instance holds its lease (it is syncing it now, or died and its lease lapses within sync.lease_ttl)", r.kind.table());
            continue;
        }
        println!(
            "{:<22} {:<9} pages {:>6}  records {:>8}  rows written {:>8}  events {:>8}",
            r.kind.table(),
            r.run.as_str(),
            r.totals.pages,
            r.totals.records_read,
            r.totals.rows_written,
            r.totals.events_written
        );
    }
    for (kind, e) in &summary.failures {
        eprintln!("error: {kind}: {}", e.chain());
    }
    if !summary.not_tried.is_empty() {
        let names: Vec<&str> = summary.not_tried.iter().map(|k| k.table()).collect();
        eprintln!("error: not tried, as PartnerStack could not be reached: {}", names.join(", "));
    }
    Ok(if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
