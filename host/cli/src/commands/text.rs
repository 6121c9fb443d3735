//! How the CLI writes things for people: outcomes, durations, one-line
//! cuts. The API's JSON shapes are `crate::views`; this is only their
//! rendering in tables.

use keyhole_runtime::Outcome;

/// One line describing an outcome, for tables.
pub fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Ok { value } => value.clone(),
        Outcome::GuestError { message } => message.clone(),
        Outcome::Deadline { timeout_ms } => format!("stopped at its {timeout_ms} ms deadline"),
        Outcome::Memory { limit_bytes } => {
            format!(
                "exceeded its {} memory limit",
                bytesize::ByteSize(*limit_bytes)
            )
        }
        Outcome::Trap { trap, message } => format!("{trap}: {message}"),
        Outcome::Failed { message } => message.clone(),
        Outcome::MemoryBudget {
            limit_bytes,
            budget_bytes,
            waited_ms,
        } => format!(
            "not run: no room for its {} memory limit in the host's {} memory budget (waited {waited_ms} ms)",
            bytesize::ByteSize(*limit_bytes),
            bytesize::ByteSize(*budget_bytes)
        ),
    }
}

/// Human duration from microseconds: `850µs`, `12.3ms`, `1.20s`.
pub fn duration_text(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// `text` with each control character (newline, carriage return, escape,
/// ...) written as its escape (`\n`, `\u{1b}`): for text others chose (a
/// listener's output and errors, names it asked for, event ids and topics)
/// printed to the operator's terminal, where a newline could forge a line
/// of `audit tail` and an escape sequence could rewrite the screen.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Collapses a text to one line of at most `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// `text` with every run of more than `max` non-space characters cut to
/// its first `max` and a count of the rest: an error that quotes what it
/// refused stays readable when what it refused is 70 KB.
pub fn shorten_words(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    let long = |w: &str| w.chars().nth(max).is_some();
    if !text.split(char::is_whitespace).any(long) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(max * 4);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if long(word) {
            let rest = word.chars().count() - max;
            out.extend(word.chars().take(max));
            out.push_str(&format!("…[{rest} more characters]"));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_helpers() {
        assert_eq!(duration_text(850), "850µs");
        assert_eq!(duration_text(12_345), "12.3ms");
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(printable("plain é"), "plain é");
        assert_eq!(
            printable("a\n2026 #1 admin\u{1b}[2K\r\t"),
            "a\\n2026 #1 admin\\u{1b}[2K\\r\\t"
        );
        assert_eq!(one_line("abcdef", 4), "abc…");
    }

    #[test]
    fn long_words_are_cut_and_counted() {
        let huge = "x".repeat(1_000);
        let text = format!("error: invalid value '{huge}' for '--role <ROLE>'\n");
        let short = shorten_words(&text, 100);
        assert_eq!(
            short,
            format!(
                "error: invalid value '{}…[902 more characters] for '--role <ROLE>'\n",
                "x".repeat(99)
            )
        );
        assert!(matches!(
            shorten_words("error: a short one\n", 100),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
