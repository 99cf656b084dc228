//! `deploy/iam/controller-policy.json` stays least-privilege: valid JSON, every action the
//! provider calls is allowed, and nothing destructive or role-passing is granted on `*`. And
//! `deploy/iam/cloudformation.json` forwards exactly the events the interruption parser reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use serde_json::Value;

fn policy() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/iam/controller-policy.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn destructive_actions_and_pass_role_are_scoped() {
    let policy = policy();
    let statements = policy["Statement"].as_array().unwrap();
    for statement in statements {
        let actions = strings(&statement["Action"]);
        let resources = strings(&statement["Resource"]);
        let scoped = !statement["Condition"].is_null() || resources.iter().all(|r| *r != "*");
        for action in &actions {
            if [
                "ec2:TerminateInstances",
                "ec2:DeleteLaunchTemplate",
                "iam:PassRole",
                "ec2:CreateTags",
            ]
            .contains(action)
            {
                assert!(
                    scoped && !resources.contains(&"*") && !statement["Condition"].is_null(),
                    "{action} must be limited by resource and condition: {statement}"
                );
            }
            assert!(!action.ends_with(":*"), "wildcard action {action}");
            if action.starts_with("iam:") || action.starts_with("sqs:") {
                assert!(
                    !resources.contains(&"*"),
                    "{action} on every resource: {statement}"
                );
            }
        }
    }
}

#[test]
fn every_call_the_provider_makes_is_allowed() {
    let policy = policy();
    let allowed: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    for action in [
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeSpotPriceHistory",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeImages",
        "ec2:DescribeCapacityReservations",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplates",
        "ec2:CreateLaunchTemplate",
        "ec2:CreateFleet",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "ssm:GetParameter",
        "iam:PassRole",
        "iam:GetInstanceProfile",
        "iam:CreateInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:ListInstanceProfiles",
        "iam:DeleteInstanceProfile",
        "pricing:GetProducts",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    ] {
        assert!(allowed.contains(&action), "{action} is not allowed");
    }
}

#[test]
fn the_queue_rules_forward_exactly_the_events_the_parser_reads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/iam/cloudformation.json"
    );
    let template: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut forwarded: Vec<(String, String)> = template["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::Events::Rule")
        .map(|rule| {
            let pattern = &rule["Properties"]["EventPattern"];
            assert_eq!(
                rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0], "InterruptionQueue",
                "{rule}"
            );
            (
                pattern["source"][0].as_str().unwrap().to_owned(),
                pattern["detail-type"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    forwarded.sort();
    let mut handled: Vec<(String, String)> = nodewright_aws::interruption::HANDLED_EVENTS
        .iter()
        .map(|(s, d)| ((*s).to_owned(), (*d).to_owned()))
        .collect();
    handled.sort();
    assert_eq!(forwarded, handled);
}
