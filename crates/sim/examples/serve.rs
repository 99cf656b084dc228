//! Runs the API server on 127.0.0.1 (port from the first argument, default 8080) and writes a
//! kubeconfig to the second argument, if given: `cargo run -p nodewright-sim --example serve`.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(Ok(8080), |p| p.parse())?;
    let state = nodewright_sim::AppState::new();
    let server = nodewright_sim::Server::start(SocketAddr::from(([127, 0, 0, 1], port)), state).await?;
    let url = format!("http://{}", server.addr());
    if let Some(path) = args.next() {
        std::fs::write(&path, nodewright_sim::testing::kubeconfig_yaml(&url))?;
    }
    println!("serving on {url}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
