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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_helpers() {
        assert_eq!(duration_text(850), "850µs");
        assert_eq!(duration_text(12_345), "12.3ms");
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
