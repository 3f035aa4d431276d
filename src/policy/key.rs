//! KMS key policies as they bear on the Connect SLR: which statements deny
//! it an operation it needs, and which operations the policy itself allows
//! it (as good as a grant). A Deny anywhere wins
//! (https://docs.aws.amazon.com/kms/latest/developerguide/policy-evaluation.html);
//! the account principal only delegates to IAM and allows nobody by itself
//! (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html).

use serde::Serialize;
use serde_json::Value;

use super::{Effect, Statement, principals, statements, strings, wildcard_match};

/// The SLR as a key policy may name it.
#[derive(Debug, Clone)]
pub struct SlrPrincipal<'a> {
    pub role_arn: &'a str,
    pub role_name: &'a str,
    pub account: &'a str,
}

/// One statement that denies the SLR some operations it needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyPolicyDenial {
    /// `Sid <sid>`, or `#<position>` when it has none.
    pub statement: String,
    pub operations: Vec<String>,
    /// The statement's `Condition` when the guard could not judge it: the
    /// Deny may not apply, and the finding says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unjudged_condition: Option<Value>,
}

impl SlrPrincipal<'_> {
    /// Whether a `Principal` value names the SLR: everyone, the role (with
    /// or without its path), or its account.
    fn named_by(&self, value: &Value, with_account: bool) -> bool {
        principals(value).into_iter().any(|(kind, name)| {
            kind == "*"
                || (kind == "AWS"
                    && (name == "*"
                        || self.is_role(name)
                        || (with_account && self.is_account(name))))
        })
    }

    fn is_role(&self, arn: &str) -> bool {
        arn.eq_ignore_ascii_case(self.role_arn)
            || (arn.starts_with("arn:")
                && arn.split(':').nth(4) == Some(self.account)
                && arn.contains(":role/")
                && arn
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(self.role_name)))
            || (arn.contains(":assumed-role/")
                && arn
                    .split('/')
                    .nth(1)
                    .is_some_and(|n| n.eq_ignore_ascii_case(self.role_name)))
    }

    fn is_account(&self, name: &str) -> bool {
        name == self.account || name.ends_with(&format!("::{}:root", self.account))
    }

    /// Whether the statement applies to the SLR: named by `Principal`, or
    /// left out of a `NotPrincipal` (listing only its account does not
    /// exempt a role: IAM needs the role's own ARN there).
    fn covered_by(&self, stmt: &Statement) -> bool {
        match (stmt.principal, stmt.not_principal) {
            (Some(principal), _) => self.named_by(principal, true),
            (None, Some(spared)) => !principals(spared)
                .into_iter()
                .any(|(kind, name)| kind == "AWS" && self.is_role(name)),
            (None, None) => false,
        }
    }
}

/// The statements that deny the SLR any of `operations` (`Decrypt`, ...).
pub fn key_policy_denials(
    policy: &Value,
    slr: &SlrPrincipal,
    operations: &[String],
) -> Vec<KeyPolicyDenial> {
    statements(policy)
        .iter()
        .filter(|stmt| stmt.effect == Effect::Deny && slr.covered_by(stmt))
        .filter_map(|stmt| {
            let denied = covered_operations(stmt, operations);
            if denied.is_empty() {
                return None;
            }
            let unjudged_condition = match stmt.condition.map(|c| applies(c, slr)) {
                None | Some(Judged::Applies) => None,
                Some(Judged::DoesNotApply) => return None,
                Some(Judged::Unknown) => stmt.condition.cloned(),
            };
            Some(KeyPolicyDenial {
                statement: stmt.label.clone(),
                operations: denied,
                unjudged_condition,
            })
        })
        .collect()
}

/// The `operations` the policy itself allows the SLR, unconditionally and
/// by naming it (or everyone): these need no grant.
pub fn key_policy_allows(policy: &Value, slr: &SlrPrincipal, operations: &[String]) -> Vec<String> {
    let mut allowed = Vec::new();
    for stmt in statements(policy) {
        let names_slr = stmt
            .principal
            .is_some_and(|principal| slr.named_by(principal, false));
        if stmt.effect == Effect::Allow && !stmt.conditional && names_slr {
            allowed.extend(covered_operations(&stmt, operations));
        }
    }
    allowed.sort();
    allowed.dedup();
    allowed
}

/// Whether the policy lets `role` call `kms:CreateGrant`: an unconditional
/// Allow naming the role, its account (which hands the decision to the
/// role's IAM policy) or everyone, and no Deny that may apply to it.
pub fn lets_role_create_grants(policy: &Value, role: &SlrPrincipal) -> bool {
    let create_grant = ["CreateGrant".to_owned()];
    if !key_policy_denials(policy, role, &create_grant).is_empty() {
        return false;
    }
    statements(policy).iter().any(|stmt| {
        stmt.effect == Effect::Allow
            && !stmt.conditional
            && stmt.principal.is_some_and(|p| role.named_by(p, true))
            && !covered_operations(stmt, &create_grant).is_empty()
    })
}

fn covered_operations(stmt: &Statement, operations: &[String]) -> Vec<String> {
    operations
        .iter()
        .filter(|op| stmt.actions.matches(&format!("kms:{op}"), true))
        .cloned()
        .collect()
}

enum Judged {
    Applies,
    DoesNotApply,
    Unknown,
}

/// Judges a `Condition` block for the SLR's own calls, as far as IAM's
/// documented semantics allow: TLS (every AWS API call uses it) and the
/// caller's ARN and account. Anything else is `Unknown`.
fn applies(condition: &Value, slr: &SlrPrincipal) -> Judged {
    let Some(operators) = condition.as_object() else {
        return Judged::Unknown;
    };
    let mut all = true;
    for (operator, keys) in operators {
        let Some(keys) = keys.as_object() else {
            return Judged::Unknown;
        };
        for (key, values) in keys {
            match judge(operator, key, &strings(Some(values)), slr) {
                Some(holds) => all &= holds,
                None => return Judged::Unknown,
            }
        }
    }
    if all {
        Judged::Applies
    } else {
        Judged::DoesNotApply
    }
}

/// Whether one condition holds for the SLR's calls; `None` when it cannot
/// be told.
fn judge(operator: &str, key: &str, values: &[&str], slr: &SlrPrincipal) -> Option<bool> {
    let key = key.to_ascii_lowercase();
    if operator == "Bool" && key == "aws:securetransport" {
        return Some(values.iter().any(|v| v.eq_ignore_ascii_case("true")));
    }
    let actual = match key.as_str() {
        "aws:principalarn" => slr.role_arn,
        "aws:principalaccount" | "kms:calleraccount" => slr.account,
        _ => return None,
    };
    let (negated, base) = match operator.strip_suffix("IfExists").unwrap_or(operator) {
        op @ ("StringNotEquals" | "StringNotLike" | "ArnNotEquals" | "ArnNotLike") => {
            (true, op.replace("Not", ""))
        }
        op @ ("StringEquals" | "StringLike" | "ArnEquals" | "ArnLike") => (false, op.to_owned()),
        _ => return None,
    };
    let wildcards = base.ends_with("Like");
    let matched = values.iter().any(|v| {
        if wildcards {
            wildcard_match(v, actual, false)
        } else {
            *v == actual
        }
    });
    Some(matched != negated)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_Ab1";

    fn slr() -> SlrPrincipal<'static> {
        SlrPrincipal {
            role_arn: ROLE,
            role_name: "AWSServiceRoleForAmazonConnect_Ab1",
            account: "111122223333",
        }
    }

    fn ops() -> Vec<String> {
        vec!["Decrypt".into(), "GenerateDataKey".into()]
    }

    fn denied(statement: Value) -> Vec<KeyPolicyDenial> {
        key_policy_denials(&json!({"Statement": [statement]}), &slr(), &ops())
    }

    #[test]
    fn a_deny_covers_the_slr_by_any_name_that_includes_it() {
        for principal in [
            json!("*"),
            json!({"AWS": "*"}),
            json!({"AWS": ROLE}),
            json!({"AWS": "arn:aws:iam::111122223333:role/AWSServiceRoleForAmazonConnect_Ab1"}),
            json!({"AWS": "arn:aws:iam::111122223333:root"}),
            json!({"AWS": ["111122223333"]}),
        ] {
            let found = denied(
                json!({"Effect": "Deny", "Principal": principal, "Action": "kms:Decrypt", "Resource": "*"}),
            );
            assert_eq!(found.len(), 1, "{principal}");
            assert_eq!(found[0].operations, ["Decrypt"]);
            assert_eq!(found[0].statement, "#1");
        }
    }

    #[test]
    fn not_principal_exempts_only_the_role_itself() {
        let only_account = json!({"Sid": "DenyOthers", "Effect": "Deny",
            "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"});
        let found = denied(only_account);
        assert_eq!(found[0].statement, "Sid DenyOthers");
        assert_eq!(found[0].operations, ops());
        let with_role = json!({"Effect": "Deny",
            "NotPrincipal": {"AWS": [ROLE, "arn:aws:iam::111122223333:root"]}, "Action": "kms:*", "Resource": "*"});
        assert!(denied(with_role).is_empty());
    }

    #[test]
    fn conditions_are_judged_as_far_as_iam_documents_them() {
        let tls = json!({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
        assert!(denied(tls).is_empty(), "Connect calls KMS over TLS");
        let others = json!({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
            "Condition": {"StringNotLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/aws-service-role/*"}}});
        assert!(denied(others).is_empty(), "the SLR is excepted");
        let everyone_else = json!({"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/Admin"}}});
        assert_eq!(denied(everyone_else).len(), 1, "the SLR is not excepted");
        let via = json!({"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringNotEquals": {"kms:ViaService": "s3.eu-west-2.amazonaws.com"}}});
        let found = denied(via);
        assert!(
            found[0].unjudged_condition.is_some(),
            "reported, and said to be unjudged"
        );
    }

    #[test]
    fn the_policy_itself_can_allow_the_slr_but_the_account_principal_does_not() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Decrypt"], "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:GenerateDataKey*", "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-2.amazonaws.com"}}}]});
        assert_eq!(key_policy_allows(&policy, &slr(), &ops()), ["Decrypt"]);
    }
}
