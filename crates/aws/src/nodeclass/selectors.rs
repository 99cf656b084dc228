//! Selector terms as EC2 `Describe*` filters, the way Karpenter's providers build them: each tag
//! term is its own query (tags within it ANDed, `*` meaning "the key exists"), all `id`s share one
//! query, all `name`s another. Terms are ORed, so the results of the queries are unioned.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use nodewright_api::ec2nodeclass::{SecurityGroupSelectorTerm, SubnetSelectorTerm};

/// One filter per tag: `tag:<key>=<value>`, or `tag-key=<key>` for `*`.
pub fn tag_filters(tags: &BTreeMap<String, String>) -> Vec<Filter> {
    tags.iter()
        .map(|(key, value)| {
            if value == "*" {
                Filter::builder().name("tag-key").values(key).build()
            } else {
                Filter::builder().name(format!("tag:{key}")).values(value).build()
            }
        })
        .collect()
}

fn one_filter(name: &str, values: Vec<&String>) -> Option<Vec<Filter>> {
    if values.is_empty() {
        return None;
    }
    let mut filter = Filter::builder().name(name);
    for value in values {
        filter = filter.values(value);
    }
    Some(vec![filter.build()])
}

/// The `DescribeSubnets` filter sets for `terms`.
pub fn subnet_queries(terms: &[SubnetSelectorTerm]) -> Vec<Vec<Filter>> {
    let ids = terms.iter().filter_map(|t| t.id.as_ref()).collect();
    let mut queries: Vec<Vec<Filter>> = one_filter("subnet-id", ids).into_iter().collect();
    queries.extend(
        terms
            .iter()
            .filter(|t| t.id.is_none() && !t.tags.is_empty())
            .map(|t| tag_filters(&t.tags)),
    );
    queries
}

/// The `DescribeSecurityGroups` filter sets for `terms`.
pub fn security_group_queries(terms: &[SecurityGroupSelectorTerm]) -> Vec<Vec<Filter>> {
    let ids = terms.iter().filter_map(|t| t.id.as_ref()).collect();
    let names = terms.iter().filter_map(|t| t.name.as_ref()).collect();
    let mut queries: Vec<Vec<Filter>> = one_filter("group-id", ids).into_iter().collect();
    queries.extend(one_filter("group-name", names));
    queries.extend(
        terms
            .iter()
            .filter(|t| t.id.is_none() && t.name.is_none() && !t.tags.is_empty())
            .map(|t| tag_filters(&t.tags)),
    );
    queries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(queries: &[Vec<Filter>]) -> Vec<Vec<(String, Vec<String>)>> {
        queries
            .iter()
            .map(|q| {
                q.iter()
                    .map(|f| (f.name().unwrap_or_default().to_owned(), f.values().to_vec()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn ids_share_a_query_and_each_tag_term_has_its_own() {
        let terms = [
            SubnetSelectorTerm {
                id: Some("subnet-1".into()),
                ..Default::default()
            },
            SubnetSelectorTerm {
                tags: [("karpenter.sh/discovery".to_owned(), "demo".to_owned())].into(),
                ..Default::default()
            },
            SubnetSelectorTerm {
                id: Some("subnet-2".into()),
                ..Default::default()
            },
            SubnetSelectorTerm {
                tags: [
                    ("Name".to_owned(), "*".to_owned()),
                    ("tier".to_owned(), "private".to_owned()),
                ]
                .into(),
                ..Default::default()
            },
        ];
        let s = |v: &str| v.to_owned();
        assert_eq!(
            shape(&subnet_queries(&terms)),
            vec![
                vec![(s("subnet-id"), vec![s("subnet-1"), s("subnet-2")])],
                vec![(s("tag:karpenter.sh/discovery"), vec![s("demo")])],
                vec![
                    (s("tag-key"), vec![s("Name")]),
                    (s("tag:tier"), vec![s("private")])
                ],
            ]
        );
    }

    #[test]
    fn security_groups_by_id_name_and_tags() {
        let terms = [
            SecurityGroupSelectorTerm {
                name: Some("default".into()),
                ..Default::default()
            },
            SecurityGroupSelectorTerm {
                id: Some("sg-1".into()),
                ..Default::default()
            },
            SecurityGroupSelectorTerm {
                tags: [("team".to_owned(), "a".to_owned())].into(),
                ..Default::default()
            },
        ];
        let names: Vec<Vec<String>> = shape(&security_group_queries(&terms))
            .into_iter()
            .map(|q| q.into_iter().map(|(name, _)| name).collect())
            .collect();
        assert_eq!(names, [["group-id"], ["group-name"], ["tag:team"]]);
    }
}
