//! Just enough of IAM policy evaluation to judge an SLR: decoding documents
//! as IAM returns them, wildcard matching, and the questions the rules ask
//! ("does this trust policy admit exactly this service?", "do these inline
//! policies allow this action on this resource?").

mod key;

pub use key::{
    KeyPolicyDenial, SlrPrincipal, key_policy_allows, key_policy_denials, lets_role_create_grants,
};

use percent_encoding::percent_decode_str;
use serde_json::Value;

pub const CONNECT_SERVICE_PRINCIPAL: &str = "connect.amazonaws.com";

/// IAM returns policy documents URL-encoded (RFC 3986); tests and other
/// tools may hand them over already decoded. Accept both.
pub fn decode_document(raw: &str) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_str(raw) {
        return Ok(value);
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|e| format!("policy document is not valid UTF-8 after URL-decoding: {e}"))?;
    serde_json::from_str(&decoded).map_err(|e| format!("policy document is not valid JSON: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// One statement, normalised: every "string or list" field becomes a list.
#[derive(Debug)]
struct Statement<'a> {
    effect: Effect,
    actions: Matcher<'a>,
    resources: Option<Matcher<'a>>,
    principal: Option<&'a Value>,
    not_principal: Option<&'a Value>,
    conditional: bool,
    condition: Option<&'a Value>,
    /// The `Sid`, else `#<1-based position>`, to name the statement in a fix.
    label: String,
}

/// `Action` or `NotAction` (likewise for resources).
#[derive(Debug)]
enum Matcher<'a> {
    Only(Vec<&'a str>),
    AllBut(Vec<&'a str>),
}

impl Matcher<'_> {
    fn matches(&self, text: &str, case_insensitive: bool) -> bool {
        let any = |patterns: &[&str]| {
            patterns
                .iter()
                .any(|p| wildcard_match(p, text, case_insensitive))
        };
        match self {
            Matcher::Only(patterns) => any(patterns),
            Matcher::AllBut(patterns) => !any(patterns),
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn matcher<'a>(stmt: &'a Value, only: &str, all_but: &str) -> Option<Matcher<'a>> {
    if let Some(v) = stmt.get(only) {
        Some(Matcher::Only(strings(Some(v))))
    } else {
        stmt.get(all_but).map(|v| Matcher::AllBut(strings(Some(v))))
    }
}

fn statements(document: &Value) -> Vec<Statement<'_>> {
    let raw: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    };
    raw.into_iter()
        .enumerate()
        .filter_map(|(index, stmt)| {
            let effect = match stmt.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return None,
            };
            Some(Statement {
                effect,
                actions: matcher(stmt, "Action", "NotAction")?,
                resources: matcher(stmt, "Resource", "NotResource"),
                principal: stmt.get("Principal"),
                not_principal: stmt.get("NotPrincipal"),
                conditional: stmt.get("Condition").is_some(),
                condition: stmt.get("Condition"),
                label: stmt
                    .get("Sid")
                    .and_then(Value::as_str)
                    .filter(|sid| !sid.is_empty())
                    .map_or_else(|| format!("#{}", index + 1), |sid| format!("Sid {sid}")),
            })
        })
        .collect()
}

/// IAM wildcards: `*` any run of characters, `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |c: char| {
        if case_insensitive {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ti = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Every principal a `Principal` value names, as `(kind, value)`;
/// `"*"` is returned as `("*", "*")`.
fn principals(value: &Value) -> Vec<(&str, &str)> {
    match value {
        Value::String(s) if s == "*" => vec![("*", "*")],
        Value::String(s) => vec![("AWS", s.as_str())],
        Value::Object(map) => map
            .iter()
            .flat_map(|(kind, v)| {
                strings(Some(v))
                    .into_iter()
                    .map(move |p| (kind.as_str(), p))
            })
            .collect(),
        _ => vec![("?", "unreadable principal")],
    }
}

fn is_connect_service(kind: &str, value: &str) -> bool {
    kind == "Service" && value.eq_ignore_ascii_case(CONNECT_SERVICE_PRINCIPAL)
}

/// The STS calls that assume a role: whoever a trust policy lets make any
/// of them gets in (web identity and SAML federation included).
const ASSUME_ACTIONS: [&str; 3] = [
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRoleWithSAML",
];

/// Problems with a trust policy that must admit exactly
/// `connect.amazonaws.com`; empty when it does.
pub fn trust_problems(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut connect_allowed = false;
    let mut connect_denied = false;
    for stmt in statements(document) {
        match stmt.effect {
            Effect::Allow if ASSUME_ACTIONS.iter().any(|a| stmt.actions.matches(a, true)) => {
                connect_allowed |= admit(&stmt, &mut problems);
            }
            // Connect itself calls sts:AssumeRole; only a Deny of that
            // call, and only an unconditional one, certainly shuts it out.
            Effect::Deny if !stmt.conditional && stmt.actions.matches("sts:AssumeRole", true) => {
                connect_denied |= denies_connect(&stmt);
            }
            Effect::Allow | Effect::Deny => {}
        }
    }
    if !connect_allowed || connect_denied {
        problems.push(format!("does not admit {CONNECT_SERVICE_PRINCIPAL}"));
    }
    problems
}

/// Records who an Allow statement lets in besides Connect; true when it
/// lets Connect in.
fn admit(stmt: &Statement, problems: &mut Vec<String>) -> bool {
    if stmt.not_principal.is_some() {
        problems.push(
            "an Allow statement uses NotPrincipal, admitting every principal it does not name"
                .to_owned(),
        );
        return false;
    }
    let mut connect = false;
    for (kind, value) in stmt.principal.map(principals).unwrap_or_default() {
        if is_connect_service(kind, value) {
            connect = true;
        } else {
            problems.push(format!("admits {kind} principal {value}"));
        }
    }
    connect
}

/// Whether a Deny statement covers `connect.amazonaws.com`: it names it or
/// everyone (`"*"`, `{"AWS": "*"}`), or its `NotPrincipal` leaves it out.
fn denies_connect(stmt: &Statement) -> bool {
    if let Some(spared) = stmt.not_principal {
        return !principals(spared)
            .into_iter()
            .any(|(kind, value)| is_connect_service(kind, value));
    }
    stmt.principal
        .map(principals)
        .unwrap_or_default()
        .into_iter()
        .any(|(kind, value)| is_everyone(kind, value) || is_connect_service(kind, value))
}

fn is_everyone(kind: &str, value: &str) -> bool {
    kind == "*" || (kind == "AWS" && value == "*")
}

/// Whether the identity policies allow `action` on `resource`, with an
/// explicit Deny winning over any Allow.
pub fn allows(documents: &[&Value], action: &str, resource: &str) -> bool {
    let covers = |stmt: &Statement| {
        stmt.actions.matches(action, true)
            && stmt
                .resources
                .as_ref()
                .is_some_and(|r| r.matches(resource, false))
    };
    let all: Vec<Statement> = documents.iter().flat_map(|d| statements(d)).collect();
    let denied = all.iter().any(|s| s.effect == Effect::Deny && covers(s));
    let allowed = all.iter().any(|s| s.effect == Effect::Allow && covers(s));
    allowed && !denied
}

/// Whether some Allow statement grants an action of `service` (e.g.
/// `profile`) on `resource`, and no Deny takes every action of it away.
/// Used where AWS documents no exact action list; a Deny of only some of
/// the service's actions cannot be judged and does not count.
pub fn allows_any_action_of(documents: &[&Value], service: &str, resource: &str) -> bool {
    let prefix = format!("{service}:").to_ascii_lowercase();
    let all: Vec<Statement> = documents.iter().flat_map(|d| statements(d)).collect();
    let on_resource = |stmt: &Statement| {
        stmt.resources
            .as_ref()
            .is_some_and(|r| r.matches(resource, false))
    };
    let names_service = |stmt: &Statement| match &stmt.actions {
        Matcher::Only(patterns) => patterns
            .iter()
            .any(|p| *p == "*" || p.to_ascii_lowercase().starts_with(&prefix)),
        Matcher::AllBut(_) => true,
    };
    let takes_all = |stmt: &Statement| match &stmt.actions {
        Matcher::Only(patterns) => patterns
            .iter()
            .any(|p| *p == "*" || p.eq_ignore_ascii_case(&format!("{service}:*"))),
        Matcher::AllBut(patterns) => !patterns
            .iter()
            .any(|p| p.to_ascii_lowercase().starts_with(&prefix) || *p == "*"),
    };
    let allowed = all
        .iter()
        .any(|s| s.effect == Effect::Allow && names_service(s) && on_resource(s));
    let denied = all
        .iter()
        .any(|s| s.effect == Effect::Deny && !s.conditional && takes_all(s) && on_resource(s));
    allowed && !denied
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_follow_iam() {
        assert!(wildcard_match("kinesis:Put*", "kinesis:PutRecords", false));
        assert!(wildcard_match("KINESIS:put*", "kinesis:PutRecord", true));
        assert!(!wildcard_match(
            "kinesis:Put*",
            "kinesis:DescribeStream",
            false
        ));
        assert!(wildcard_match(
            "arn:aws:kinesis:*:*:stream/a?c",
            "arn:aws:kinesis:eu-west-2:1:stream/abc",
            false
        ));
        assert!(!wildcard_match(
            "arn:*:stream/abc",
            "arn:x:stream/abcd",
            false
        ));
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("a*b*c", "aXbYbZc", false));
    }

    #[test]
    fn decodes_url_encoded_and_plain_documents() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_document(plain).unwrap(),
            decode_document(encoded).unwrap()
        );
        assert!(decode_document("%7Bnot json").is_err());
    }

    #[test]
    fn allows_honours_explicit_deny() {
        let allow =
            json!({"Statement": {"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}});
        let deny = json!({"Statement": [{"Effect": "Deny", "Action": "kinesis:PutRecord", "Resource": "arn:aws:kinesis:r:1:stream/s"}]});
        assert!(allows(
            &[&allow],
            "kinesis:PutRecord",
            "arn:aws:kinesis:r:1:stream/s"
        ));
        assert!(!allows(
            &[&allow, &deny],
            "kinesis:PutRecord",
            "arn:aws:kinesis:r:1:stream/s"
        ));
        assert!(!allows(
            &[],
            "kinesis:PutRecord",
            "arn:aws:kinesis:r:1:stream/s"
        ));
    }
}
