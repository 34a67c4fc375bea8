//! What the admin UI's forms send: posted bodies and filter queries.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use pm_http::Problem;

/// Largest form body (the evidence form is the biggest; the API's limit for its JSON).
const MAX_FORM: usize = crate::routes::MAX_COMMAND_BODY;

/// A posted `application/x-www-form-urlencoded` body, in order.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) async fn read(parts: &Parts, body: Body) -> Result<Form, Problem> {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the admin UI's forms are sent as application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("the form is larger than {} KiB", MAX_FORM / 1024),
            )
        })?;
        Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Form {
        Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, when it is not blank.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The filter fields of a form that repeats a list page's filters (the replay form).
    pub(crate) fn filters(&self) -> Vec<(String, String)> {
        filter_pairs(self.0.iter().map(|(k, v)| (k.clone(), v.clone())))
    }
}

/// Refuses a `POST` the browser says another site started (`Sec-Fetch-Site`, or an `Origin`
/// that is not this host): a second line behind the CSRF token and the SameSite cookie.
pub(crate) fn same_site(parts: &Parts) -> Result<(), Problem> {
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let refused = || {
        Problem::new(
            StatusCode::FORBIDDEN,
            "cross-site",
            "this form was sent from another site; open the admin UI and send it from there",
        )
    };
    if h("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Err(refused());
    }
    if let (Some(origin), Some(host)) = (h("origin"), h("host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        // Host names only: a proxy may forward `Host` without the port the browser used.
        if origin != "null" && !hostname(origin_host).eq_ignore_ascii_case(hostname(host)) {
            return Err(refused());
        }
    }
    Ok(())
}

/// `host[:port]` without the port (`[::1]:8443` → `[::1]`).
fn hostname(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => name,
        _ => authority,
    }
}

/// A filter form's query as the JSON routes' parameters: blank fields dropped (an empty
/// select means "any"), dates (`YYYY-MM-DD` from a date input) made instants — a `…_from`
/// date is its day's start, a `…_to` or `until` date includes its whole day.
pub(crate) fn filter_pairs(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    pairs
        .filter(|(k, v)| !v.trim().is_empty() && k != "csrf")
        .map(|(k, v)| {
            let v = v.trim().to_owned();
            let day = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok();
            let is_end = k.ends_with("_to") || k == "until";
            let is_start = k.ends_with("_from") || k == "since";
            match day {
                Some(d) if is_end => {
                    let next = d.succ_opt().unwrap_or(d);
                    (k, format!("{next}T00:00:00Z"))
                }
                Some(d) if is_start => (k, format!("{d}T00:00:00Z")),
                _ => (k, v),
            }
        })
        .collect()
}

/// The filters of a list page's query.
pub(crate) fn query_filters(raw: Option<&str>) -> Vec<(String, String)> {
    filter_pairs(form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned())
}

/// What a date field shows for an instant a filter holds (the inverse of [`filter_pairs`]).
pub(crate) fn shown_value(name: &str, value: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) else {
        return value.to_owned();
    };
    let date = t.date_naive();
    let is_end = name.ends_with("_to") || name == "until";
    match date.pred_opt() {
        Some(prev) if is_end && t.time() == chrono::NaiveTime::MIN => prev.to_string(),
        _ => date.to_string(),
    }
}

/// A query string of `pairs`.
pub(crate) fn query(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &str) -> Vec<(String, String)> {
        query_filters(Some(raw))
    }

    #[test]
    fn blank_fields_are_dropped_and_dates_cover_whole_days() {
        assert_eq!(
            pairs("status=&user_id=&created_from=2026-12-01&created_to=2026-12-06&on_hold=true&csrf=x"),
            vec![
                ("created_from".to_owned(), "2026-12-01T00:00:00Z".to_owned()),
                ("created_to".to_owned(), "2026-12-07T00:00:00Z".to_owned()),
                ("on_hold".to_owned(), "true".to_owned()),
            ]
        );
        assert_eq!(
            shown_value("created_to", "2026-12-07T00:00:00Z"),
            "2026-12-06"
        );
        assert_eq!(
            shown_value("created_from", "2026-12-01T00:00:00Z"),
            "2026-12-01"
        );
        assert_eq!(shown_value("status", "success"), "success");
        // Anything else goes to the API's parsers as typed, to be refused there.
        assert_eq!(pairs("created_from=yesterday")[0].1, "yesterday");
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        let parts = |headers: &[(&str, &str)]| {
            let mut req = axum::http::Request::builder().uri("/admin/x");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.body(()).expect("request").into_parts().0
        };
        assert!(same_site(&parts(&[])).is_ok());
        assert!(same_site(&parts(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_site(&parts(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_site(&parts(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000")
        ]))
        .is_ok());
        assert!(same_site(&parts(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:3000")
        ]))
        .is_err());
    }
}
