//! What `pmctl loadtest` prints: a line per finished step, then the summary table, the
//! knee, the baseline shares, the comparison and where the files are.

use pm_lab::loadtest::latency::ms;
use pm_lab::loadtest::report::{self, RunReport, StepReport, Written};

/// One line as soon as a step is done (progress bars are cleared by then).
pub(super) fn print_step(s: &StepReport) {
    println!("{}", step_line(s));
}

/// What a finished step says: rates, latencies, drops, the objective, the verification.
pub(crate) fn step_line(s: &StepReport) -> String {
    let verify = match &s.verify {
        Some(v) if v.ok => ", verified".to_owned(),
        Some(v) => format!(
            ", VERIFY FAILED ({} missing, {} doubled, {} unexpected)",
            v.missing, v.doubled, v.unexpected
        ),
        None => String::new(),
    };
    format!(
        "{:.0}/s: achieved {:.0}/s, p50 {} ms, p99 {} ms, max {} ms, dropped {}, {}{verify}",
        s.offered_rate,
        s.achieved_rate,
        ms(s.latency.p50_us),
        ms(s.latency.p99_us),
        ms(s.latency.max_us),
        s.dropped,
        if s.slo.passed {
            "SLO met"
        } else {
            "SLO missed"
        },
    )
}

/// The end of a run.
pub(super) fn print_run(run: &RunReport, old: Option<&RunReport>, written: &Written) {
    println!("{}", report::summary_table(run));
    if let Some(b) = &run.baseline {
        println!("against the baseline {}:", b.file);
        println!("{}", report::baseline_table(run, b));
    }
    if let Some(old) = old {
        let c = report::compare(old, run);
        println!("compared with {} ({}):", old.started_at, old.run_id);
        println!("{}", c.table());
        for note in c.notes() {
            println!("{note}");
        }
    }
    println!(
        "results: {} (report {}, chart {})",
        written.json.display(),
        written.markdown.display(),
        written.svg.display()
    );
}
