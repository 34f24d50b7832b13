//! A TCP proxy in front of a real service, for outage tests: while it is
//! cut, its port refuses connections and the open ones are dropped, as
//! when the service stops; restored, it forwards again on the same port.
//! The shared service itself never stops.

use std::sync::Arc;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Proxy {
    pub port: u16,
    target: String,
    up: Arc<watch::Sender<bool>>,
    accepting: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a proxy port");
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let mut proxy = Proxy {
            port,
            target: target.to_string(),
            up: Arc::new(up),
            accepting: None,
        };
        proxy.accepting = Some(tokio::spawn(forward(listener, proxy.target.clone(), proxy.up.clone())));
        proxy
    }

    /// `url` with its `host:port` replaced by this proxy's.
    pub fn url_for(&self, url: &str) -> String {
        url.replacen(&self.target, &format!("127.0.0.1:{}", self.port), 1)
    }

    /// The service "stops": the port refuses and open connections drop.
    pub fn cut(&mut self) {
        self.up.send_replace(false);
        if let Some(task) = self.accepting.take() {
            task.abort();
        }
    }

    /// The service is back on the same port.
    pub async fn restore(&mut self) {
        self.up.send_replace(true);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        self.accepting = Some(tokio::spawn(forward(listener, self.target.clone(), self.up.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn forward(listener: TcpListener, target: String, up: Arc<watch::Sender<bool>>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        let mut up = up.subscribe();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = up.wait_for(|up| !*up) => {}
            }
        });
    }
}
