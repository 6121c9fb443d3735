//! The `--inject` syntax and the checks on injections, in the user's terms.

use super::*;

fn parsed(text: &str) -> Injection {
    Injection::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn refused(text: &str) -> String {
    match Injection::parse(text) {
        Ok(i) => panic!("{text:?} parsed as {i:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_text_form_takes_origins_with_colons_and_ports() {
    let i = parsed("SLACK_TOKEN@https://slack.com/Authorization: Bearer {}");
    assert_eq!(
        i,
        Injection {
            secret: "SLACK_TOKEN".into(),
            origin: "https://slack.com".into(),
            header: "Authorization".into(),
            template: "Bearer {}".into(),
        }
    );
    assert_eq!(
        i.to_string(),
        "SLACK_TOKEN@https://slack.com/Authorization: Bearer {}"
    );
    let i = parsed("API_KEY@http://127.0.0.1:8099/X-Api-Key");
    assert_eq!(
        (i.origin.as_str(), i.header.as_str(), i.template.as_str()),
        ("http://127.0.0.1:8099", "X-Api-Key", "{}")
    );
    let i = parsed("K@http://[::1]:8080/X-Key:{}");
    assert_eq!(
        (i.origin.as_str(), i.template.as_str()),
        ("http://[::1]:8080", "{}")
    );
    // A bare host is HTTPS on 443, as in --allow-http; colons in the
    // template are the template's.
    let i = parsed("K@api.example.com/Cookie: session={}; path=/x:y");
    assert_eq!(
        (i.origin.as_str(), i.template.as_str()),
        ("api.example.com", "session={}; path=/x:y")
    );
    let rule = i.rule().unwrap();
    assert_eq!(&*rule.origin_text, "https://api.example.com:443");
    assert_eq!(rule.header.as_str(), "cookie");
}

#[test]
fn mistakes_are_named_in_the_user_s_terms() {
    for (text, says) in [
        ("SLACK_TOKEN", "no `@`"),
        ("SLACK_TOKEN@https://slack.com", "no `/HEADER`"),
        ("SLACK TOKEN@https://slack.com/Authorization", "secret name"),
        ("K@ftp://x/Authorization", "scheme must be http or https"),
        (
            "K@https://user@slack.com/Authorization",
            "without a user name",
        ),
        (
            "K@https://slack.com/api/Authorization: Bearer {}",
            "without a path",
        ),
        ("K@https://slack.com/Host", "host is set by keyhole"),
        ("K@https://slack.com/Accept-Encoding", "accept-encoding"),
        ("K@https://slack.com/Authorization: Bearer", "exactly once"),
        ("K@https://slack.com/Authorization: {}{}", "exactly once"),
        (
            "K@https://slack.com/Authorization: Bearer\u{7f}{}",
            "printable",
        ),
        ("K@https://slack.com/: {}", "not an HTTP header name"),
    ] {
        let e = refused(text);
        assert!(e.contains(says), "{text:?}: {e}");
    }
    let long = format!("K@https://slack.com/X: {}{{}}", "a".repeat(MAX_TEMPLATE));
    assert!(refused(&long).contains("longer than"));
}

#[test]
fn rules_refuse_two_values_for_one_header_and_too_many() {
    let a = parsed("A@https://slack.com/Authorization: Bearer {}");
    let b = parsed("B@slack.com:443/authorization: {}");
    let e = Rules::of(&[a.clone(), b]).err().unwrap();
    assert!(e.contains("already sets authorization"), "{e}");
    assert!(Rules::of(&[]).unwrap().is_none());
    let other = parsed("B@https://hooks.slack.com/Authorization: Bearer {}");
    let rules = Rules::of(&[a.clone(), other]).unwrap().unwrap();
    assert_eq!(rules.origins().count(), 2);
    let many = vec![a; MAX_INJECTIONS + 1];
    assert!(Rules::of(&many).err().unwrap().contains("at most"));
}

#[test]
fn a_header_value_is_the_template_around_the_value() {
    let rule = parsed("K@https://x/Authorization: Bearer {} (v1)")
        .rule()
        .unwrap();
    let v = rule.header_value("t0k3n").unwrap();
    assert_eq!(v.as_bytes(), b"Bearer t0k3n (v1)");
    assert!(v.is_sensitive());
    assert!(rule.header_value("line\r\nbreak").is_none());
}
