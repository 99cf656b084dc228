//! The requirements algebra: per label key, the set of values a node may have, with Karpenter's
//! semantics for In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte and Lte, intersection, compatibility
//! and `minValues`.

use std::{fmt, sync::Arc};

use nodewright_api::Operator;

use crate::intern::{Interner, Sym};

/// The allowed values of one key: a finite set, or everything except a finite set, optionally
/// bounded to integers in `(greater_than, less_than)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    complement: bool,
    /// Sorted and deduplicated. For a finite set, already filtered by the bounds. Shared: the
    /// solver clones requirement sets per candidate node, and instance-type sets are long.
    values: Arc<[Sym]>,
    greater_than: Option<i64>,
    less_than: Option<i64>,
    /// Distinct values this key must keep across the chosen instance types.
    pub min_values: Option<u32>,
}

impl Requirement {
    /// Any value, including none (the key need not exist).
    pub fn any() -> Self {
        Self {
            complement: true,
            values: Arc::from([]),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    /// Exactly these values.
    pub fn one_of(mut values: Vec<Sym>) -> Self {
        values.sort_unstable();
        values.dedup();
        Self {
            complement: false,
            values: values.into(),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    /// Builds a requirement from an operator and its values. Malformed numeric values yield an
    /// empty requirement (nothing satisfies it), which validation reports earlier.
    pub fn from_operator(operator: Operator, values: &[Sym], interner: &Interner) -> Self {
        let bound = || match values {
            [only] => interner.number(*only),
            _ => None,
        };
        let mut requirement = match operator {
            Operator::In => Self::one_of(values.to_vec()),
            Operator::NotIn => Self {
                complement: true,
                ..Self::one_of(values.to_vec())
            },
            Operator::Exists => Self::any(),
            Operator::DoesNotExist => Self::one_of(Vec::new()),
            Operator::Gt => Self {
                greater_than: bound(),
                ..Self::any()
            },
            Operator::Gte => Self {
                greater_than: bound().map(|n| n.saturating_sub(1)),
                ..Self::any()
            },
            Operator::Lt => Self {
                less_than: bound(),
                ..Self::any()
            },
            Operator::Lte => Self {
                less_than: bound().map(|n| n.saturating_add(1)),
                ..Self::any()
            },
        };
        if operator.is_numeric() && bound().is_none() {
            requirement = Self::one_of(Vec::new());
        }
        requirement
    }

    fn within_bounds(&self, sym: Sym, interner: &Interner) -> bool {
        if self.greater_than.is_none() && self.less_than.is_none() {
            return true;
        }
        interner.number(sym).is_some_and(|n| {
            self.greater_than.is_none_or(|gt| n > gt) && self.less_than.is_none_or(|lt| n < lt)
        })
    }

    fn bounds_contradict(&self) -> bool {
        matches!((self.greater_than, self.less_than), (Some(gt), Some(lt)) if gt.saturating_add(1) >= lt)
    }

    /// Whether `value` is allowed.
    pub fn has(&self, value: Sym, interner: &Interner) -> bool {
        if self.complement {
            self.values.binary_search(&value).is_err() && self.within_bounds(value, interner)
        } else {
            self.values.binary_search(&value).is_ok()
        }
    }

    /// Whether no value is allowed (`DoesNotExist`, or an empty intersection).
    pub fn is_empty(&self) -> bool {
        if self.complement {
            self.bounds_contradict()
        } else {
            self.values.is_empty()
        }
    }

    /// The allowed values, when they are a finite set.
    pub fn values(&self) -> Option<&[Sym]> {
        (!self.complement).then_some(&*self.values)
    }

    /// The number of allowed values, `None` when unbounded.
    pub fn len(&self) -> Option<usize> {
        self.values().map(<[Sym]>::len)
    }

    /// The single allowed value, if exactly one.
    pub fn single(&self) -> Option<Sym> {
        match self.values() {
            Some([only]) => Some(*only),
            _ => None,
        }
    }

    /// The operator this requirement reads as (for messages and Karpenter's special cases).
    pub fn operator(&self) -> Operator {
        if self.complement {
            if self.greater_than.is_some() {
                Operator::Gt
            } else if self.less_than.is_some() {
                Operator::Lt
            } else if self.values.is_empty() {
                Operator::Exists
            } else {
                Operator::NotIn
            }
        } else if self.values.is_empty() {
            Operator::DoesNotExist
        } else {
            Operator::In
        }
    }

    /// The values allowed by both.
    #[must_use]
    pub fn intersect(&self, other: &Requirement, interner: &Interner) -> Requirement {
        let greater_than = max_option(self.greater_than, other.greater_than);
        let less_than = min_option(self.less_than, other.less_than);
        // The set operations return their first or second operand when it is the answer, so the
        // result shares it instead of copying.
        let pick = |kept: Kept, first: &Arc<[Sym]>, second: &Arc<[Sym]>| match kept {
            Kept::First => Arc::clone(first),
            Kept::Second => Arc::clone(second),
            Kept::New(values) => values,
        };
        let (complement, mut values) = match (self.complement, other.complement) {
            (false, false) => (
                false,
                pick(
                    sorted_intersection(&self.values, &other.values),
                    &self.values,
                    &other.values,
                ),
            ),
            (false, true) => (
                false,
                pick(
                    sorted_difference(&self.values, &other.values),
                    &self.values,
                    &other.values,
                ),
            ),
            (true, false) => (
                false,
                pick(
                    sorted_difference(&other.values, &self.values),
                    &other.values,
                    &self.values,
                ),
            ),
            (true, true) => (
                true,
                pick(
                    sorted_union(&self.values, &other.values),
                    &self.values,
                    &other.values,
                ),
            ),
        };
        if !complement && (greater_than.is_some() || less_than.is_some()) {
            let bounds = Requirement {
                complement,
                values: Arc::from([]),
                greater_than,
                less_than,
                min_values: None,
            };
            if values.iter().any(|v| !bounds.within_bounds(*v, interner)) {
                values = values
                    .iter()
                    .copied()
                    .filter(|v| bounds.within_bounds(*v, interner))
                    .collect();
            }
        }
        Requirement {
            complement,
            values,
            greater_than,
            less_than,
            min_values: max_option(self.min_values, other.min_values),
        }
    }

    /// Whether some value satisfies both.
    pub fn intersects(&self, other: &Requirement, interner: &Interner) -> bool {
        match (self.complement, other.complement) {
            (false, false)
                if self.greater_than.is_none()
                    && other.greater_than.is_none()
                    && other.less_than.is_none() =>
            {
                // The common case: two finite sets.
                self.values.iter().any(|v| other.values.binary_search(v).is_ok())
            }
            (false, _) => self.values.iter().any(|v| other.has(*v, interner)),
            (true, false) => other.values.iter().any(|v| self.has(*v, interner)),
            (true, true) => !self.intersect(other, interner).is_empty(),
        }
    }

    /// The requirement as API terms (`operator`, values): `In`/`NotIn` with their values, `Gt`/`Lt`
    /// with their bound, `Exists`, `DoesNotExist`. A bounded set that also excludes values gives
    /// several terms, which together mean the same.
    pub fn to_terms(&self, interner: &Interner) -> Vec<(Operator, Vec<String>)> {
        let values = || {
            self.values
                .iter()
                .map(|v| interner.resolve(*v).to_owned())
                .collect::<Vec<_>>()
        };
        if !self.complement {
            return vec![if self.values.is_empty() {
                (Operator::DoesNotExist, Vec::new())
            } else {
                (Operator::In, values())
            }];
        }
        let mut terms = Vec::new();
        if let Some(gt) = self.greater_than {
            terms.push((Operator::Gt, vec![gt.to_string()]));
        }
        if let Some(lt) = self.less_than {
            terms.push((Operator::Lt, vec![lt.to_string()]));
        }
        if !self.values.is_empty() {
            terms.push((Operator::NotIn, values()));
        }
        if terms.is_empty() {
            terms.push((Operator::Exists, Vec::new()));
        }
        terms
    }

    /// Renders like `In [a b]` for messages.
    pub fn display<'a>(&'a self, interner: &'a Interner) -> impl fmt::Display + 'a {
        DisplayRequirement {
            requirement: self,
            interner,
        }
    }
}

struct DisplayRequirement<'a> {
    requirement: &'a Requirement,
    interner: &'a Interner,
}

impl fmt::Display for DisplayRequirement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.requirement;
        let values: Vec<&str> = r.values.iter().map(|v| self.interner.resolve(*v)).collect();
        match r.operator() {
            Operator::Gt | Operator::Lt if r.complement => {
                let mut parts = Vec::new();
                if let Some(gt) = r.greater_than {
                    parts.push(format!("> {gt}"));
                }
                if let Some(lt) = r.less_than {
                    parts.push(format!("< {lt}"));
                }
                if !values.is_empty() {
                    parts.push(format!("not in [{}]", values.join(" ")));
                }
                write!(f, "{}", parts.join(", "))
            }
            Operator::Exists => write!(f, "Exists"),
            Operator::DoesNotExist => write!(f, "DoesNotExist"),
            op => write!(f, "{op} [{}]", values.join(" ")),
        }
    }
}

fn max_option<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_option<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The result of a set operation: one of the operands unchanged (shared, not copied), or new.
enum Kept {
    First,
    Second,
    New(Arc<[Sym]>),
}

fn sorted_intersection(a: &[Sym], b: &[Sym]) -> Kept {
    if a.iter().all(|v| b.binary_search(v).is_ok()) {
        return Kept::First;
    }
    Kept::New(a.iter().copied().filter(|v| b.binary_search(v).is_ok()).collect())
}

fn sorted_difference(a: &[Sym], b: &[Sym]) -> Kept {
    if a.iter().all(|v| b.binary_search(v).is_err()) {
        return Kept::First;
    }
    Kept::New(
        a.iter()
            .copied()
            .filter(|v| b.binary_search(v).is_err())
            .collect(),
    )
}

fn sorted_union(a: &[Sym], b: &[Sym]) -> Kept {
    if b.iter().all(|v| a.binary_search(v).is_ok()) {
        return Kept::First;
    }
    if a.iter().all(|v| b.binary_search(v).is_ok()) {
        return Kept::Second;
    }
    let mut union: Vec<Sym> = a.iter().chain(b).copied().collect();
    union.sort_unstable();
    union.dedup();
    Kept::New(union.into())
}

/// Requirements on several keys; a key that is absent allows anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Requirements {
    /// Sorted by key.
    entries: Vec<(Sym, Requirement)>,
}

/// Why two requirement sets cannot both hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatible {
    /// Both constrain the key and no value satisfies both.
    Disjoint {
        key: Sym,
        wanted: Requirement,
        offered: Requirement,
    },
    /// The pod requires a custom label no node of this kind defines.
    Undefined { key: Sym, wanted: Requirement },
}

impl Incompatible {
    /// A sentence for users, e.g. `label kubernetes.io/arch In [arm64] not satisfied (In [amd64])`.
    pub fn describe(&self, interner: &Interner) -> String {
        match self {
            Self::Disjoint { key, wanted, offered } => format!(
                "{} {} not satisfied (nodes offer {})",
                interner.resolve(*key),
                wanted.display(interner),
                offered.display(interner)
            ),
            Self::Undefined { key, wanted } => {
                format!(
                    "label {} {} is not defined by the NodePool",
                    interner.resolve(*key),
                    wanted.display(interner)
                )
            }
        }
    }
}

impl Requirements {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: Sym) -> Option<&Requirement> {
        self.entries
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| &self.entries[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Sym, &Requirement)> {
        self.entries.iter().map(|(k, r)| (*k, r))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Intersects `requirement` into the entry for `key`.
    pub fn add(&mut self, key: Sym, requirement: Requirement, interner: &Interner) {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.intersect(&requirement, interner),
            Err(i) => self.entries.insert(i, (key, requirement)),
        }
    }

    /// Intersects every entry of `other` into `self`.
    pub fn add_all(&mut self, other: &Requirements, interner: &Interner) {
        for (key, requirement) in other.iter() {
            self.add(key, requirement.clone(), interner);
        }
    }

    /// Replaces the entry for `key`.
    pub fn set(&mut self, key: Sym, requirement: Requirement) {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = requirement,
            Err(i) => self.entries.insert(i, (key, requirement)),
        }
    }

    /// Whether some key has no allowed value.
    pub fn has_empty(&self) -> Option<Sym> {
        self.entries
            .iter()
            .find(|(_, r)| r.is_empty() && r.operator() != Operator::DoesNotExist)
            .map(|(k, _)| *k)
    }

    /// Karpenter's `Intersects`: every key both constrain must have a common value, except that a
    /// `NotIn`/`DoesNotExist` pod requirement against a `NotIn`/`DoesNotExist` node requirement is
    /// fine (both say "not these").
    pub fn intersects(&self, pod: &Requirements, interner: &Interner) -> Result<(), Box<Incompatible>> {
        let (mut i, mut j) = (0, 0);
        while i < self.entries.len() && j < pod.entries.len() {
            let (node_key, offered) = &self.entries[i];
            let (pod_key, wanted) = &pod.entries[j];
            match node_key.cmp(pod_key) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    if !offered.intersects(wanted, interner) {
                        let negative = |r: &Requirement| {
                            matches!(r.operator(), Operator::NotIn | Operator::DoesNotExist)
                        };
                        if !(negative(wanted) && negative(offered)) {
                            return Err(Box::new(Incompatible::Disjoint {
                                key: *pod_key,
                                wanted: wanted.clone(),
                                offered: offered.clone(),
                            }));
                        }
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Karpenter's `Compatible`: [`Self::intersects`], and every custom key the pod requires
    /// positively must be defined by the node side (well-known keys may be undefined).
    pub fn compatible(
        &self,
        pod: &Requirements,
        well_known: &dyn Fn(Sym) -> bool,
        interner: &Interner,
    ) -> Result<(), Box<Incompatible>> {
        for (key, wanted) in pod.iter() {
            if self.get(key).is_none()
                && !well_known(key)
                && !matches!(wanted.operator(), Operator::NotIn | Operator::DoesNotExist)
            {
                return Err(Box::new(Incompatible::Undefined {
                    key,
                    wanted: wanted.clone(),
                }));
            }
        }
        self.intersects(pod, interner)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A small universe: the integers 0..8 as strings and three words.
    fn universe(interner: &mut Interner) -> Vec<Sym> {
        (0..8)
            .map(|n| n.to_string())
            .chain(["a", "b", "c"].map(String::from))
            .map(|v| interner.intern(&v))
            .collect()
    }

    /// The simple model the algebra must agree with: the subset of the universe a requirement allows.
    fn denotation(requirement: &Requirement, universe: &[Sym], interner: &Interner) -> Vec<Sym> {
        universe
            .iter()
            .copied()
            .filter(|v| requirement.has(*v, interner))
            .collect()
    }

    fn arbitrary_requirement() -> impl Strategy<Value = (Operator, Vec<usize>)> {
        (0usize..8, prop::collection::vec(0usize..11, 0..4))
            .prop_map(|(op, values)| (Operator::ALL[op], values))
    }

    fn build(op: Operator, indices: &[usize], universe: &[Sym], interner: &Interner) -> Requirement {
        let values: Vec<Sym> = if op.is_numeric() {
            indices
                .first()
                .map(|i| vec![universe[*i % 8]])
                .unwrap_or_default()
        } else {
            indices.iter().map(|i| universe[*i]).collect()
        };
        Requirement::from_operator(op, &values, interner)
    }

    proptest! {
        #[test]
        fn intersection_is_set_intersection(a in arbitrary_requirement(), b in arbitrary_requirement()) {
            let mut interner = Interner::new();
            let universe = universe(&mut interner);
            let ra = build(a.0, &a.1, &universe, &interner);
            let rb = build(b.0, &b.1, &universe, &interner);
            let both = ra.intersect(&rb, &interner);
            let expected: Vec<Sym> = denotation(&ra, &universe, &interner)
                .into_iter()
                .filter(|v| rb.has(*v, &interner))
                .collect();
            prop_assert_eq!(denotation(&both, &universe, &interner), expected.clone());
            // intersects() agrees whenever the answer is decided inside the universe.
            if !expected.is_empty() {
                prop_assert!(ra.intersects(&rb, &interner));
            }
            if ra.values().is_some() || rb.values().is_some() {
                prop_assert_eq!(ra.intersects(&rb, &interner), !expected.is_empty());
            }
            prop_assert_eq!(both, rb.intersect(&ra, &interner), "intersection commutes");
        }
    }

    #[test]
    fn operators_mean_what_kubernetes_says() {
        let mut interner = Interner::new();
        let u = universe(&mut interner);
        let three = u[3];
        let gt = Requirement::from_operator(Operator::Gt, &[three], &interner);
        assert!(!gt.has(u[3], &interner) && gt.has(u[4], &interner) && !gt.has(u[8], &interner));
        let gte = Requirement::from_operator(Operator::Gte, &[three], &interner);
        assert!(gte.has(u[3], &interner) && !gte.has(u[2], &interner));
        let lte = Requirement::from_operator(Operator::Lte, &[three], &interner);
        assert!(lte.has(u[3], &interner) && !lte.has(u[4], &interner));
        let exists = Requirement::from_operator(Operator::Exists, &[], &interner);
        assert!(exists.has(u[9], &interner) && exists.len().is_none());
        let dne = Requirement::from_operator(Operator::DoesNotExist, &[], &interner);
        assert!(dne.is_empty() && dne.operator() == Operator::DoesNotExist);
        let bad = Requirement::from_operator(Operator::Gt, &[u[9]], &interner);
        assert!(bad.is_empty(), "a non-numeric Gt matches nothing");
        let contradictory = gt.intersect(
            &Requirement::from_operator(Operator::Lt, &[u[4]], &interner),
            &interner,
        );
        assert!(contradictory.is_empty(), "x > 3 and x < 4 has no integer");
        assert_eq!(gt.display(&interner).to_string(), "> 3");
        assert_eq!(gt.to_terms(&interner), [(Operator::Gt, vec!["3".to_owned()])]);
        assert_eq!(
            lte.to_terms(&interner),
            [(Operator::Lt, vec!["4".to_owned()])],
            "Lte 3 is Lt 4 on integers"
        );
        let not_in = Requirement::from_operator(Operator::NotIn, &[u[9]], &interner);
        assert_eq!(
            not_in.to_terms(&interner),
            [(Operator::NotIn, vec!["b".to_owned()])],
            "u[9] is the word b"
        );
        assert_eq!(exists.to_terms(&interner), [(Operator::Exists, vec![])]);
        assert_eq!(dne.to_terms(&interner), [(Operator::DoesNotExist, vec![])]);
    }

    #[test]
    fn compatibility_follows_karpenter() {
        let mut interner = Interner::new();
        let arch = interner.intern("kubernetes.io/arch");
        let team = interner.intern("team");
        let amd64 = interner.intern("amd64");
        let arm64 = interner.intern("arm64");
        let a = interner.intern("a");
        let mut node = Requirements::new();
        node.add(arch, Requirement::one_of(vec![amd64]), &interner);
        let well_known = |k: Sym| k == arch;

        let mut pod = Requirements::new();
        pod.add(arch, Requirement::one_of(vec![arm64]), &interner);
        let err = node.compatible(&pod, &well_known, &interner).unwrap_err();
        assert_eq!(
            err.describe(&interner),
            "kubernetes.io/arch In [arm64] not satisfied (nodes offer In [amd64])"
        );

        let mut custom = Requirements::new();
        custom.add(team, Requirement::one_of(vec![a]), &interner);
        let undefined = node.compatible(&custom, &well_known, &interner).unwrap_err();
        assert!(matches!(*undefined, Incompatible::Undefined { .. }));
        let mut negative = Requirements::new();
        negative.add(
            team,
            Requirement::from_operator(Operator::NotIn, &[a], &interner),
            &interner,
        );
        assert!(
            node.compatible(&negative, &well_known, &interner).is_ok(),
            "NotIn on an undefined label is fine"
        );
        let mut undefined_well_known = Requirements::new();
        undefined_well_known.add(
            interner.intern("topology.kubernetes.io/zone"),
            Requirement::one_of(vec![a]),
            &interner,
        );
        let zone_known = |k: Sym| interner.resolve(k).starts_with("topology") || k == arch;
        assert!(
            node.compatible(&undefined_well_known, &zone_known, &interner)
                .is_ok()
        );

        let mut both_negative_node = Requirements::new();
        both_negative_node.add(
            team,
            Requirement::from_operator(Operator::DoesNotExist, &[], &interner),
            &interner,
        );
        assert!(both_negative_node.intersects(&negative, &interner).is_ok());
    }
}
