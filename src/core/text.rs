//! Diagnostics shared by every file the operator writes (the config, strategy files): a
//! TOML error as one line naming the line, the key and what is wrong, in plain words.

/// One line: where, which key, what is wrong.
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = plain_words(&error.message().replace('\n', "; "));
    let Some(span) = error.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line_no}: {t}.{k}: {message}"),
        (None, Some(k)) => format!("line {line_no}: {k}: {message}"),
        _ => format!("line {line_no}: {message}"),
    }
}

/// A problem as one line: a value quoted back to the operator may hold line breaks.
pub fn one_line(problem: &str) -> String {
    problem.replace('\r', "\\r").replace('\n', "\\n")
}

/// serde's messages name Rust types; an operator wants the kind of value to write.
fn plain_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        if field == "poll" {
            return "the [poll] table is missing; add it with symbols = [\"BTCUSDT\"] (or \"all\")"
                .into();
        }
        return format!("{field} is missing; it is required");
    }
    let mut message = message
        .replace("expected f64", "expected a number without quotes")
        .replace("expected a boolean", "expected true or false");
    for integer in ["u32", "u64", "usize"] {
        message = message.replace(
            &format!("expected {integer}"),
            "expected a whole number without quotes, 0 or more",
        );
    }
    message
}

/// At most `max` bytes of `text`, cut at a character boundary: for logging what a client
/// sent, which may be of any length.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `url` with its password, if any, shown as `***`: for logs and messages.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
