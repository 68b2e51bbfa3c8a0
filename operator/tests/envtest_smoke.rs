use kube::CustomResourceExt;

#[tokio::test]
async fn smoke() {
    let assets = std::env::var("KUBEBUILDER_ASSETS").expect("assets");
    let env = envtest::Environment {
        binary_assets_settings: envtest::BinaryAssetsSettings {
            download_binary_assets: false,
            binary_assets_directory: Some(assets),
            ..Default::default()
        },
        ..Default::default()
    }
    .with_crds(fetch_operator::crd::FetchPipeline::crd())
    .expect("crds");
    let server = env.create().await.expect("create");
    let client = server.client().expect("client");
    let v = client.apiserver_version().await.expect("version");
    println!("apiserver {}", v.git_version);
    server.destroy().await.expect("destroy");
}
