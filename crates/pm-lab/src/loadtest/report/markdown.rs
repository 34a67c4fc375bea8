//! The Markdown report written next to the JSON result: what ran, the chart, the table,
//! and how the numbers were measured.

use std::fmt::Write;

use super::{table, RunReport};
use crate::loadtest::latency::ms;

/// The report of `run`, linking the chart file `svg_name` (in the same folder).
pub fn markdown(run: &RunReport, svg_name: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Load test {}\n", run.started_at);
    let _ = writeln!(md, "- command: `{}`", run.command_line.join(" "));
    let _ = writeln!(
        md,
        "- revision: {} · machine: {}",
        run.git_revision.as_deref().unwrap_or("unknown"),
        run.machine.summary()
    );
    let _ = writeln!(
        md,
        "- scenario: `{}` (seed {}{}{}), bad deliveries {}",
        run.scenario.name,
        run.scenario.seed,
        run.scenario
            .file
            .as_ref()
            .map_or_else(|| ", built in".to_owned(), |f| format!(", {f}")),
        run.scenario
            .sha256
            .as_ref()
            .map_or_else(String::new, |h| format!(
                ", sha256 {}",
                &h[..h.len().min(12)]
            )),
        if run.scenario.keep_faults {
            "sent"
        } else {
            "left out"
        }
    );
    if let Some(kafka) = &run.kafka {
        let _ = writeln!(md, "- Kafka: {}", kafka.describe());
    }
    let s = &run.settings;
    let _ = writeln!(
        md,
        "- target: {} · {} connections · warm-up {:.1} s and {:.1} s measured per step · objective p99 ≤ {} ms",
        run.target,
        s.connections,
        s.warmup_ms as f64 / 1000.0,
        s.duration_ms as f64 / 1000.0,
        s.slo_p99_ms
    );
    let _ = match &run.knee {
        Some(k) => writeln!(
            md,
            "- **knee: {:.0}/s** (achieved {:.0}/s, p99 {} ms)",
            k.offered_rate,
            k.achieved_rate,
            ms(k.p99_us)
        ),
        None => writeln!(md, "- **knee: none** (no step met the objective)"),
    };
    let _ = writeln!(
        md,
        "\n![latency percentiles and achieved rate against offered rate]({svg_name})\n"
    );
    let _ = write!(md, "| |");
    for step in &run.steps {
        let _ = write!(md, " {:.0}/s |", step.offered_rate);
    }
    let _ = write!(md, "\n|---|");
    for _ in &run.steps {
        let _ = write!(md, "---|");
    }
    let _ = writeln!(md);
    for (label, values) in table::rows(&run.steps) {
        let _ = writeln!(
            md,
            "| {label} | {} |",
            values.join(" | ").replace('\n', " ")
        );
    }
    if let Some(b) = &run.baseline {
        let _ = writeln!(md, "\n## Against this machine's baseline (`{}`)\n", b.file);
        let _ = writeln!(
            md,
            "| offered /s | achieved /s | of bare HTTP | of PostgreSQL insert+commit |"
        );
        let _ = writeln!(md, "|---|---|---|---|");
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1} %", v * 100.0));
        for step in &run.steps {
            let (http, pg) = b.shares(step.achieved_rate);
            let _ = writeln!(
                md,
                "| {:.0} | {:.0} | {} | {} |",
                step.offered_rate,
                step.achieved_rate,
                pct(http),
                pct(pg)
            );
        }
    }
    statements(&mut md, run);
    let problems: Vec<String> = run
        .steps
        .iter()
        .filter_map(|step| {
            let v = step.verify.as_ref().filter(|v| !v.ok)?;
            Some(format!(
                "- {:.0}/s: {}",
                step.offered_rate,
                v.examples.join("; ")
            ))
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(md, "\n## Verification problems\n\n{}", problems.join("\n"));
    }
    let _ = writeln!(md, "\n## How this was measured\n\n{METHOD}");
    md
}

/// Each step's statements from `pg_stat_statements`, or why there are none.
fn statements(md: &mut String, run: &RunReport) {
    if let Some(why) = &run.statements_unavailable {
        let _ = writeln!(
            md,
            "\n## Where the database spent its time\n\nNot recorded: {why}."
        );
        return;
    }
    if run.steps.iter().all(|s| s.statements.is_none()) {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Where the database spent its time\n\nFrom `pg_stat_statements`, reset before \
         each step (warm-up included); execution time only (planning and waiting for a \
         connection are not in it). Per call: rows, shared blocks (hit + read) and WAL bytes."
    );
    for step in &run.steps {
        let Some(p) = &step.statements else { continue };
        let seconds =
            (step.measured_seconds + run.settings.warmup_ms as f64 / 1000.0).max(f64::EPSILON);
        let _ = writeln!(
            md,
            "\n### {:.0}/s offered\n\n{} statements executed, {:.0} ms of execution \
             ({:.2} backends busy on average), {:.1} MB of WAL\n",
            step.offered_rate,
            p.calls,
            p.total_ms,
            p.total_ms / 1000.0 / seconds,
            p.wal_bytes as f64 / 1e6
        );
        let _ = writeln!(
            md,
            "| statement | calls | total ms | share | mean ms | rows | blocks | WAL bytes |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for s in &p.top {
            let per_call = |v: u64| v as f64 / s.calls.max(1) as f64;
            let _ = writeln!(
                md,
                "| `{}` | {} | {:.0} | {:.1} % | {:.3} | {:.1} | {:.1} | {:.0} |",
                s.query.replace('|', "\\|").replace('`', "'"),
                s.calls,
                s.total_ms,
                100.0 * s.total_ms / p.total_ms.max(f64::EPSILON),
                s.mean_ms,
                per_call(s.rows),
                per_call(s.shared_blocks_hit + s.shared_blocks_read),
                per_call(s.wal_bytes)
            );
        }
    }
}

const METHOD: &str = "\
- **Open model.** Request *i* of a step is due at *i / rate* after the start, whatever \
happened to the others; a scheduler hands it to one of the workers (one HTTP/1.1 keep-alive \
connection each) at that time.
- **Latency is measured from the intended send time**, so time spent waiting for a free \
connection is part of it (no coordinated omission). *Late* requests started more than the \
slack after their time and are included with their full delay; *dropped* requests could not \
start within the give-up limit and were not sent (the ones before them carry that wait).
- **Achieved rate** = measured requests answered / time from the start of the measured period \
to the last answer. Warm-up requests are sent but not measured.
- **Knee** = highest offered rate whose p99 met the objective while achieving ≥ 95 % of the \
offered rate with ≤ 1 % dropped and ≤ 1 % failed or 5xx.
- **Verification** replays the accepted webhooks through the domain's state machines and \
compares the result with the database through the API (nothing lost, nothing doubled, no \
rejected delivery stored, every status as expected). Merchant actions are not performed.
- **Lag** (acceptance → visible through the API) is sampled by polling the API for accepted \
order webhooks; resolution about ±25 % of the lag (polls are limited to 10 % of \
the offered rate). In sync mode webhooks are stored before \
they are answered, so the lag is zero by construction.
- Histograms are microsecond HDR histograms (3 significant digits); the JSON file holds each \
one in HdrHistogram's V2 encoding (base64).
";
