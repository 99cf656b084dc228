//! Capacity reservations from `capacityReservationSelectorTerms`, as Karpenter's provider finds
//! them: `DescribeCapacityReservations` over active reservations, all `id` terms in one query,
//! each other term its own query (`ownerID`, `instanceMatchCriteria` and tags ANDed, a tag value
//! `*` meaning "the key exists"); terms are ORed, so the results are unioned. A capacity block
//! within 40 minutes of its end is `expiring` rather than `active`.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{CapacityReservationType, Filter};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nodewright_api::ec2nodeclass::{
    CapacityReservation, CapacityReservationSelectorTerm, InstanceMatchCriteria,
};

use super::selectors::tag_filters;
use crate::error::AwsError;

/// How long before its end a capacity block counts as expiring (Karpenter's margin for draining
/// its nodes before EC2 reclaims them).
pub const EXPIRING_WITHIN: SignedDuration = SignedDuration::from_mins(40);

/// Karpenter's page size for the filter queries.
const PAGE_SIZE: i32 = 1000;

/// One `DescribeCapacityReservations` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `CapacityReservationIds`; an ID query sends no page size.
    pub ids: Vec<String>,
    pub filters: Vec<Filter>,
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn criteria_text(criteria: InstanceMatchCriteria) -> &'static str {
    match criteria {
        InstanceMatchCriteria::Open => "open",
        InstanceMatchCriteria::Targeted => "targeted",
    }
}

/// The queries for `terms`; none when there are no terms.
pub fn queries(terms: &[CapacityReservationSelectorTerm]) -> Vec<Query> {
    let active = filter("state", "active");
    let ids: Vec<String> = terms.iter().filter_map(|t| t.id.clone()).collect();
    let mut queries = Vec::new();
    if !ids.is_empty() {
        queries.push(Query {
            ids,
            filters: vec![active.clone()],
        });
    }
    for term in terms.iter().filter(|t| t.id.is_none()) {
        let mut filters = vec![active.clone()];
        if let Some(owner) = &term.owner_id {
            filters.push(filter("owner-id", owner));
        }
        if let Some(criteria) = term.instance_match_criteria {
            filters.push(filter("instance-match-criteria", criteria_text(criteria)));
        }
        filters.extend(tag_filters(&term.tags));
        queries.push(Query {
            ids: Vec::new(),
            filters,
        });
    }
    queries
}

/// The status entry for one reservation EC2 described; `None` when it lacks an identifying field
/// (EC2 always sends them).
pub fn from_ec2(
    reservation: &aws_sdk_ec2::types::CapacityReservation,
    now: Timestamp,
) -> Option<CapacityReservation> {
    let end = reservation
        .end_date()
        .and_then(|end| Timestamp::from_second(end.secs()).ok());
    let capacity_block = reservation.reservation_type() == Some(&CapacityReservationType::CapacityBlock);
    let expiring = capacity_block && end.is_some_and(|end| end.duration_since(now) <= EXPIRING_WITHIN);
    let instance_match_criteria =
        reservation
            .instance_match_criteria()
            .and_then(|criteria| match criteria.as_str() {
                "open" => Some(InstanceMatchCriteria::Open),
                "targeted" => Some(InstanceMatchCriteria::Targeted),
                _ => None,
            });
    Some(CapacityReservation {
        availability_zone: reservation.availability_zone()?.to_owned(),
        end_time: end.map(Time),
        id: reservation.capacity_reservation_id()?.to_owned(),
        instance_match_criteria,
        instance_type: reservation.instance_type()?.to_owned(),
        owner_id: reservation.owner_id()?.to_owned(),
        reservation_type: Some(
            reservation
                .reservation_type()
                .map_or("default", CapacityReservationType::as_str)
                .to_owned(),
        ),
        interruptible: reservation.interruptible(),
        state: Some(if expiring { "expiring" } else { "active" }.to_owned()),
    })
}

/// The reservations `queries` select, sorted by ID.
pub async fn describe(
    ec2: &aws_sdk_ec2::Client,
    queries: &[Query],
    now: Timestamp,
) -> Result<Vec<CapacityReservation>, AwsError> {
    let mut found: BTreeMap<String, CapacityReservation> = BTreeMap::new();
    for query in queries {
        let mut request = ec2
            .describe_capacity_reservations()
            .set_filters(Some(query.filters.clone()));
        if query.ids.is_empty() {
            request = request.max_results(PAGE_SIZE);
        } else {
            request = request.set_capacity_reservation_ids(Some(query.ids.clone()));
        }
        let mut pages = request.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::api("DescribeCapacityReservations", &e))?;
            for reservation in page.capacity_reservations() {
                if let Some(entry) = from_ec2(reservation, now) {
                    found.insert(entry.id.clone(), entry);
                }
            }
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::CapacityReservationState;
    use aws_smithy_types::DateTime;

    use super::*;

    /// A query as (ids, [(filter name, values)]).
    type Shape = (Vec<String>, Vec<(String, Vec<String>)>);

    fn shape(queries: &[Query]) -> Vec<Shape> {
        queries
            .iter()
            .map(|q| {
                (
                    q.ids.clone(),
                    q.filters
                        .iter()
                        .map(|f| (f.name().unwrap_or_default().to_owned(), f.values().to_vec()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn ids_share_a_query_and_each_other_term_is_its_own_over_active_reservations() {
        let terms = [
            CapacityReservationSelectorTerm {
                id: Some("cr-1".into()),
                ..Default::default()
            },
            CapacityReservationSelectorTerm {
                tags: [("team".to_owned(), "*".to_owned())].into(),
                owner_id: Some("123456789012".into()),
                instance_match_criteria: Some(InstanceMatchCriteria::Targeted),
                ..Default::default()
            },
            CapacityReservationSelectorTerm {
                id: Some("cr-2".into()),
                ..Default::default()
            },
        ];
        let s = |v: &str| v.to_owned();
        assert_eq!(
            shape(&queries(&terms)),
            vec![
                (vec![s("cr-1"), s("cr-2")], vec![(s("state"), vec![s("active")])]),
                (
                    vec![],
                    vec![
                        (s("state"), vec![s("active")]),
                        (s("owner-id"), vec![s("123456789012")]),
                        (s("instance-match-criteria"), vec![s("targeted")]),
                        (s("tag-key"), vec![s("team")]),
                    ]
                ),
            ]
        );
        assert!(queries(&[]).is_empty());
    }

    #[test]
    fn a_capacity_block_near_its_end_is_expiring() {
        let now: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let ends_in = |minutes: i64| DateTime::from_secs(now.as_second() + minutes * 60);
        let block = |minutes| {
            aws_sdk_ec2::types::CapacityReservation::builder()
                .capacity_reservation_id("cr-block")
                .availability_zone("us-west-2a")
                .instance_type("p5.48xlarge")
                .owner_id("123456789012")
                .state(CapacityReservationState::Active)
                .instance_match_criteria(aws_sdk_ec2::types::InstanceMatchCriteria::Targeted)
                .reservation_type(CapacityReservationType::CapacityBlock)
                .end_date(ends_in(minutes))
                .build()
        };
        let later = from_ec2(&block(41), now).unwrap();
        assert_eq!(later.state.as_deref(), Some("active"));
        assert_eq!(later.reservation_type.as_deref(), Some("capacity-block"));
        assert_eq!(
            later.instance_match_criteria,
            Some(InstanceMatchCriteria::Targeted)
        );
        assert_eq!(
            later.end_time.map(|t| t.0),
            Some(now + SignedDuration::from_mins(41))
        );
        assert_eq!(
            from_ec2(&block(40), now).unwrap().state.as_deref(),
            Some("expiring")
        );
        // An ordinary reservation with an end date never expires early.
        let ordinary = aws_sdk_ec2::types::CapacityReservation::builder()
            .capacity_reservation_id("cr-od")
            .availability_zone("us-west-2b")
            .instance_type("m5.large")
            .owner_id("123456789012")
            .end_date(ends_in(5))
            .build();
        let ordinary = from_ec2(&ordinary, now).unwrap();
        assert_eq!(ordinary.state.as_deref(), Some("active"));
        assert_eq!(ordinary.reservation_type.as_deref(), Some("default"));
        let nameless = aws_sdk_ec2::types::CapacityReservation::builder()
            .availability_zone("us-west-2b")
            .build();
        assert_eq!(from_ec2(&nameless, now), None);
    }
}
