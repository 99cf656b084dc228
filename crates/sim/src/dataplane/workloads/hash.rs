//! Pod template hashes: the `pod-template-hash` of a Deployment's ReplicaSets and the
//! `controller-revision-hash` of DaemonSet pods. Like kube-controller-manager, FNV-1a (32 bits)
//! of the template, plus the collision count when there is one, written as the decimal number
//! with each digit mapped to Kubernetes' safe alphabet (no vowels, so no words; no ambiguous
//! characters). Kube hashes a Go dump of the template, this hashes its JSON: the values differ
//! from a real cluster's, but they are just as stable and short.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The alphabet of Kubernetes' `rand.SafeEncodeString`.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash label value of a template (which must not carry the hash label itself).
pub(super) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Serializing a typed template cannot fail (string keys only); an empty dump would still
    // give a stable hash.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv1a32(FNV_OFFSET, &json);
    if let Some(count) = collision_count.filter(|c| *c > 0) {
        hash = fnv1a32(hash, &count.to_le_bytes());
    }
    safe_encode(&hash.to_string())
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a32(seed: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(seed, |h, b| (h ^ u32::from(*b)).wrapping_mul(FNV_PRIME))
}

/// Kubernetes' `SafeEncodeString`: each byte picks a character of the safe alphabet.
fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Container, PodSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a32(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encoding_maps_digits_like_kubernetes() {
        // '0' is byte 48: 48 % 27 = 21 → '4'; '9' is 57: 57 % 27 = 3 → 'f'.
        assert_eq!(safe_encode("0"), "4");
        assert_eq!(safe_encode("9"), "f");
        assert_eq!(safe_encode("2166136261"), "65bb57b6b5");
    }

    #[test]
    fn the_hash_is_stable_short_and_sensitive_to_the_template() {
        let a = template_hash(&template("nginx:1"), None);
        assert_eq!(a, template_hash(&template("nginx:1"), None));
        assert_eq!(a, template_hash(&template("nginx:1"), Some(0)));
        assert!(a.len() <= 10 && !a.is_empty());
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_ne!(a, template_hash(&template("nginx:2"), None));
        assert_ne!(a, template_hash(&template("nginx:1"), Some(1)));
    }
}
