use kube::CustomResourceExt;
fn main() {
    println!("{}", serde_yaml_ng::to_string(&fetch_operator::crd::FetchPipeline::crd()).unwrap());
}
