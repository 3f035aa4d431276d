//! Remediation command text. Every value is shell-quoted: names come from
//! AWS reads and events, and a command an operator pastes must never run
//! anything it was not meant to.

use crate::model::{SLR_NAME_PREFIX, arn_partition, has_slr_prefix, role_name};

/// Quotes `value` for a POSIX shell when it holds anything but plain
/// identifier characters.
pub fn sh(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/=@,+".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

pub fn managed_policy_arn(role_arn: &str) -> String {
    format!(
        "arn:{}:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy",
        arn_partition(role_arn)
    )
}

pub fn create_slr(role_arn: &str) -> String {
    let name = role_name(role_arn);
    let suffix = has_slr_prefix(name)
        .then(|| &name[SLR_NAME_PREFIX.len()..])
        .and_then(|rest| rest.strip_prefix('_'))
        .map(|s| format!(" --custom-suffix {}", sh(s)))
        .unwrap_or_default();
    format!("aws iam create-service-linked-role --aws-service-name connect.amazonaws.com{suffix}")
}

/// What AWS does not say about [`create_slr`], for the alert's details.
pub const SLR_RECREATION_NOTE: &str = "AWS documents recreating the role with the connect.amazonaws.com service name, but not whether IAM accepts the instance's suffix for Connect, nor how an existing instance takes a recreated role back: if IAM refuses the suffix, or the instance still cannot use the role, ask AWS Support to restore the instance's service-linked role";

pub fn create_grant(key_arn: &str, role_arn: &str, operations: &[String]) -> String {
    let ops: Vec<String> = operations.iter().map(|o| sh(o)).collect();
    format!(
        "aws kms create-grant --key-id {} --grantee-principal {} --operations {} --name connect-slr-guard",
        sh(key_arn),
        sh(role_arn),
        ops.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_anything_a_shell_would_interpret() {
        assert_eq!(
            sh("arn:aws:kms:eu-west-2:1:key/abc"),
            "arn:aws:kms:eu-west-2:1:key/abc"
        );
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh(""), "''");
    }

    #[test]
    fn slr_command_keeps_the_suffix() {
        let arn = "arn:aws:iam::1:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_Ab1";
        assert_eq!(
            create_slr(arn),
            "aws iam create-service-linked-role --aws-service-name connect.amazonaws.com --custom-suffix Ab1"
        );
    }
}
