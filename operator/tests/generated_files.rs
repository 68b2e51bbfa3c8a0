//! Generated files stay in step with their source: the CRD under `k8s/` and in the Helm chart
//! are exactly what `fetch-operator crd` prints. On failure, run `hack/generate.sh` and commit.

use fetch_operator::manifests::{HEADER, crd_helm_template, crd_yaml};

fn assert_generated(relative: &str, expected: &str) {
    let path = format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"));
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    assert!(
        checked_in == expected,
        "{relative} is out of date with operator/src/crd.rs: run hack/generate.sh and commit the result"
    );
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    assert_generated(
        "k8s/crd/fetchpipelines.fetch-pipeline.dev.yaml",
        &format!("{HEADER}{}", crd_yaml().expect("yaml")),
    );
    assert_generated(
        "charts/fetch-pipeline/templates/crd-fetchpipelines.yaml",
        &crd_helm_template().expect("yaml"),
    );
}
