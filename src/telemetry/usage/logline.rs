//! One line of a log file written by `tracing-subscriber`'s default formatter, read back.
//!
//! The format is `<RFC 3339 time> <LEVEL> <message> key=value key="quoted value" ...`, with
//! string values quoted and escaped as Rust's `Debug` does and everything else bare. There
//! is no crate that reads this format back (it is not logfmt: the message has no key), so
//! the reader is small and hand-written, and it refuses rather than guesses: a line that does
//! not split cleanly into fields is reported as unreadable with the reason.

use std::time::SystemTime;

/// The parts of one log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub time: SystemTime,
    pub level: String,
    pub message: String,
    /// Fields in the order written, values unquoted and unescaped.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// The value of field `key`, if the line has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// Reads one line; the error says what is wrong with it.
pub fn parse(line: &str) -> Result<LogLine, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (stamp, rest) = line
        .split_once(' ')
        .ok_or_else(|| "no timestamp".to_owned())?;
    let time = humantime::parse_rfc3339_weak(stamp)
        .map_err(|e| format!("timestamp '{}': {e}", truncate(stamp)))?;
    let rest = rest.trim_start();
    let (level, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !LEVELS.contains(&level) {
        return Err(format!(
            "no log level after the timestamp ('{}')",
            truncate(level)
        ));
    }
    let rest = rest.trim_start();
    let start = first_field(rest).unwrap_or(rest.len());
    let message = rest[..start].trim_end().to_owned();
    let fields = parse_fields(&rest[start..])?;
    Ok(LogLine {
        time,
        level: level.to_owned(),
        message,
        fields,
    })
}

/// Byte offset of the first `key=` that starts a word, outside quotes.
fn first_field(text: &str) -> Option<usize> {
    let mut word_start = true;
    for (i, c) in text.char_indices() {
        if word_start && is_key_start(c) {
            let key_len = text[i..]
                .find(|c: char| !is_key_char(c))
                .unwrap_or(text.len() - i);
            if text[i + key_len..].starts_with('=') {
                return Some(i);
            }
        }
        word_start = c == ' ';
    }
    None
}

fn is_key_start(c: char) -> bool {
    c.is_ascii_lowercase() || c == '_'
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn parse_fields(mut text: &str) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(fields);
        }
        let key_len = text
            .find(|c: char| !is_key_char(c))
            .ok_or_else(|| format!("field '{}' has no value", truncate(text)))?;
        if key_len == 0 || !text[key_len..].starts_with('=') {
            return Err(format!("expected key=value at '{}'", truncate(text)));
        }
        let key = text[..key_len].to_owned();
        text = &text[key_len + 1..];
        let (value, rest) = if let Some(quoted) = text.strip_prefix('"') {
            unquote(quoted).map_err(|e| format!("field {key}: {e}"))?
        } else {
            let end = text.find(' ').unwrap_or(text.len());
            (text[..end].to_owned(), &text[end..])
        };
        fields.push((key, value));
        text = rest;
    }
}

/// Reads a `Debug`-escaped string up to its closing quote; returns it and what follows.
fn unquote(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &text[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some(c @ ('\\' | '"' | '\'')) => out.push(c),
                Some('u') => {
                    let rest = chars.as_str();
                    let close = rest
                        .find('}')
                        .filter(|_| rest.starts_with('{'))
                        .ok_or("bad \\u escape")?;
                    let code = u32::from_str_radix(&rest[1..close], 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or("bad \\u escape")?;
                    out.push(code);
                    for _ in 0..=close {
                        chars.next();
                    }
                }
                _ => return Err("bad escape".to_owned()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated quoted value".to_owned())
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn reads_a_usage_line_with_quoted_and_bare_values() {
        let line = parse(r#"2026-11-22T18:34:22.744114Z  INFO rate usage event="usage" category=market requests=195 req_per_s=19.50 status="🔴" tier=normal"#).unwrap();
        assert_eq!(
            line.time,
            UNIX_EPOCH + Duration::from_micros(1_795_372_462_744_114)
        );
        assert_eq!(line.level, "INFO");
        assert_eq!(line.message, "rate usage");
        assert_eq!(line.field("event"), Some("usage"));
        assert_eq!(line.field("category"), Some("market"));
        assert_eq!(line.field("req_per_s"), Some("19.50"));
        assert_eq!(line.field("status"), Some("🔴"));
        assert_eq!(line.field("tier"), Some("normal"));
        assert_eq!(line.field("missing"), None);
    }

    #[test]
    fn messages_may_hold_punctuation_and_quoted_values_spaces_and_escapes() {
        let line = parse(r#"2026-11-22T18:34:22Z  WARN rate limited; pausing the whole category event=rate_limited endpoint="/api/v2/mix/market/candles" note="a \"b\" c\\d\u{1f7e2}""#).unwrap();
        assert_eq!(line.message, "rate limited; pausing the whole category");
        assert_eq!(line.field("event"), Some("rate_limited"));
        assert_eq!(line.field("endpoint"), Some("/api/v2/mix/market/candles"));
        assert_eq!(line.field("note"), Some("a \"b\" c\\d🟢"));
    }

    #[test]
    fn a_line_without_fields_is_all_message() {
        let line = parse("2026-11-22T18:34:22Z ERROR something broke (code 5)").unwrap();
        assert_eq!(line.message, "something broke (code 5)");
        assert!(line.fields.is_empty());
    }

    #[test]
    fn broken_lines_say_what_is_wrong() {
        for (text, wanted) in [
            ("", "timestamp"),
            ("not-a-time INFO x", "timestamp"),
            ("2026-11-22T18:34:22Z LOUD x", "log level"),
            ("2026-11-22T18:34:22Z INFO m a=\"open", "unterminated"),
            ("2026-11-22T18:34:22Z INFO m a=\"\\q\"", "bad escape"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text:?}: {error}");
        }
    }
}
