//! CPU profiles on demand (`serve-api --pprof`, scope `admin`): where the service spends
//! its time under a benchmark's load, as a flame graph or folded stacks.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pm_http::Problem;
use pm_telemetry::profiling::{CpuProfiler, ProfileError};

use crate::error::ApiResult;
use crate::query::Params;
use crate::state::AppState;

/// Samples per second: frequent enough for a 10 s profile to show the hot paths, and out
/// of step with timers firing at round rates.
const FREQUENCY: i32 = 99;

/// The longest profile: under the default request timeout (30 s), which would cut it.
const MAX_SECONDS: u64 = 25;

#[utoipa::path(get, path = "/debug/pprof/profile", tag = "operations",
    params(
        ("seconds" = Option<u64>, Query, minimum = 1, maximum = 25, description = "how long to sample (default 10)"),
        ("format" = Option<String>, Query, description = "`flamegraph` (SVG, the default) or `folded` (one stack per line with its sample count)"),
    ),
    responses(
        (status = 200, description = "The profile", content_type = "image/svg+xml"),
        (status = 400, description = "A bad parameter", body = Problem),
        (status = 404, description = "Profiling is off (start serve-api with --pprof)", body = Problem),
        (status = 409, description = "Another profile is being taken", body = Problem),
        (status = 503, description = "The profiler could not run", body = Problem),
    ))]
pub(crate) async fn cpu_profile(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    if !app.inner.config.pprof {
        return Err(Problem::not_found(
            "CPU profiling is off: start serve-api with --pprof (PM_PPROF=true) to allow it",
        )
        .into());
    }
    let mut p = Params::new(q.as_deref());
    let seconds = p.number_in("seconds", 1..=MAX_SECONDS)?.unwrap_or(10);
    let folded = match p.text("format")?.as_deref() {
        None | Some("flamegraph") => false,
        Some("folded") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "query parameter `format`: must be flamegraph or folded (got {other:?})"
            ))
            .into())
        }
    };
    p.finish()?;

    let running = CpuProfiler::start(FREQUENCY).map_err(unavailable)?;
    tracing::info!(seconds, "taking a CPU profile");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let profile = running.finish().map_err(unavailable)?;
    Ok(if folded {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            profile.folded(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            profile.flamegraph().map_err(unavailable)?,
        )
            .into_response()
    })
}

fn unavailable(e: ProfileError) -> Problem {
    match e {
        ProfileError::Busy => Problem::conflict("profile-running", e.to_string()),
        ProfileError::Failed(_) => {
            tracing::warn!(error = %e, "CPU profile failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "profiler-unavailable",
                e.to_string(),
            )
        }
    }
}
