//! The etcd backend: etcd v3 through `etcd-client`, for production and
//! several controller replicas.
//!
//! Promises:
//! - every key lives under the configured namespace (by default
//!   `/causeway/<trust domain>/`): two controllers of different trust
//!   domains can share one etcd without seeing each other's keys;
//! - a [`Txn`] is one etcd transaction; a lease is an etcd lease; a
//!   [`Watch`] is an etcd watch, so compaction, revisions and lease expiry
//!   are etcd's own;
//! - unary calls are bounded by the request timeout and fail with
//!   [`StoreError::Unavailable`] when etcd is unreachable; a broken watch
//!   ends with that error rather than reconnecting behind the caller's back
//!   (the caller lists again, so it cannot miss a change);
//! - `list` reads in pages at one pinned revision, so large prefixes are one
//!   consistent snapshot without one huge response.
//!
//! TLS to etcd (CA, client certificate and key, PEM) uses tonic's rustls
//! with ring, the workspace's one crypto provider.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, GetOptions, Identity,
    PutOptions, TlsOptions, Txn as EtcdTxn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use crate::{
    BoxFuture, Compare, GetResponse, KeyValue, Lease, LeaseId, ListResponse, Op, Result, Revision,
    Store, StoreError, Txn, TxnResult, Watch, WatchEvent, ttl_seconds,
};

/// Keys per page of a `list`.
const LIST_PAGE: i64 = 256;
/// The largest response accepted: a page of values at the size limit.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port` (with [`EtcdConfig::tls`]).
    pub endpoints: Vec<String>,
    /// The prefix of every key; must end with `/`.
    pub namespace: String,
    pub connect_timeout: Duration,
    /// The bound of each unary call.
    pub request_timeout: Duration,
    pub tls: Option<EtcdTls>,
}

/// Mutual TLS to etcd: PEM files.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl EtcdConfig {
    /// Plain-text endpoints and the namespace of a trust domain, with
    /// default timeouts (5 s to connect, 5 s per call).
    pub fn new(endpoints: Vec<String>, trust_domain: &str) -> Self {
        Self {
            endpoints,
            namespace: format!("/causeway/{trust_domain}/"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// A store in etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    namespace: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects and checks that etcd answers within the connect timeout.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        if config.namespace.is_empty() || !config.namespace.ends_with('/') {
            return Err(StoreError::Config(format!(
                "etcd namespace {:?} must be non-empty and end with '/'",
                config.namespace
            )));
        }
        if config.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoint".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let client = tokio::time::timeout(
            config.connect_timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        .map_err(|_| unreachable_in(config.connect_timeout))?
        .map_err(|e| match e {
            etcd_client::Error::InvalidArgs(m) => StoreError::Config(m),
            etcd_client::Error::InvalidUri(m) => StoreError::Config(m.to_string()),
            other => map_err(other),
        })?;
        let store = Self {
            client,
            namespace: config.namespace.clone(),
            request_timeout: config.connect_timeout,
        };
        store.get("").await.map_err(|e| match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!(
                "etcd at {} did not answer: {m}",
                config.endpoints.join(", ")
            )),
            other => other,
        })?;
        Ok(Self {
            request_timeout: config.request_timeout,
            ..store
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
        })
    }

    fn strip(&self, key: &[u8]) -> Result<String> {
        key.strip_prefix(self.namespace.as_bytes())
            .and_then(|k| std::str::from_utf8(k).ok())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt {
                location: format!("etcd namespace {}", self.namespace),
                reason: format!(
                    "key {:?} is outside the namespace or not UTF-8",
                    String::from_utf8_lossy(key)
                ),
            })
    }

    /// Runs one unary call within the request timeout.
    async fn call<T>(&self, f: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T> {
        tokio::time::timeout(self.request_timeout, f)
            .await
            .map_err(|_| unreachable_in(self.request_timeout))?
            .map_err(map_err)
    }
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| StoreError::io("reading etcd TLS file", path, e))
    };
    Ok(TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca_file)?))
        .identity(Identity::from_pem(
            read(&tls.cert_file)?,
            read(&tls.key_file)?,
        )))
}

fn unreachable_in(timeout: Duration) -> StoreError {
    StoreError::Unavailable(format!("etcd did not answer within {timeout:?}"))
}

/// etcd's errors, by what a caller does about them.
fn map_err(e: etcd_client::Error) -> StoreError {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message().to_owned();
            match status.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::Unknown
                | Code::Internal
                | Code::ResourceExhausted => StoreError::Unavailable(message),
                Code::OutOfRange if message.contains("compacted") => StoreError::Compacted {
                    requested: 0,
                    compacted: 0,
                },
                _ => StoreError::Rejected(message),
            }
        }
        etcd_client::Error::InvalidArgs(m) => StoreError::Config(m),
        etcd_client::Error::InvalidUri(m) => StoreError::Config(m.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn is_lease_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::Rejected(m) | StoreError::Unavailable(m) if m.contains("lease not found"))
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StoreError::Unavailable("etcd response without a header".into()))
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<GetResponse>> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            let resp = self.call(kv.get(self.full(key), None)).await?;
            let kv = resp
                .kvs()
                .first()
                .map(|kv| self.key_value(kv))
                .transpose()?;
            Ok(GetResponse {
                kv,
                revision: revision_of(resp.header())?,
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<ListResponse>> {
        Box::pin(async move {
            let mut client = self
                .client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES);
            let full = self.full(prefix);
            let end = prefix_end(full.as_bytes());
            let mut start = full.into_bytes();
            let mut revision = 0;
            let mut kvs = Vec::new();
            loop {
                let mut options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(LIST_PAGE);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let resp = self.call(client.get(start.clone(), Some(options))).await?;
                if revision == 0 {
                    revision = revision_of(resp.header())?;
                }
                for kv in resp.kvs() {
                    kvs.push(self.key_value(kv)?);
                }
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        start = last.key().to_vec();
                        start.push(0);
                    }
                    _ => break,
                }
            }
            Ok(ListResponse { kvs, revision })
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult>> {
        Box::pin(async move {
            txn.validate()?;
            let lease = txn.ops.iter().find_map(|op| match op {
                Op::Put { lease, .. } => *lease,
                Op::Delete { .. } => None,
            });
            let compares: Vec<EtcdCompare> = txn
                .compares
                .iter()
                .map(|c| match c {
                    Compare::Absent(k) => EtcdCompare::version(self.full(k), CompareOp::Equal, 0),
                    Compare::ModRevision(k, rev) => {
                        EtcdCompare::mod_revision(self.full(k), CompareOp::Equal, *rev)
                    }
                    Compare::Value(k, v) => {
                        EtcdCompare::value(self.full(k), CompareOp::Equal, v.clone())
                    }
                })
                .collect();
            let ops: Vec<TxnOp> = txn
                .ops
                .into_iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => TxnOp::put(
                        self.full(&key),
                        value,
                        lease.map(|l| PutOptions::new().with_lease(l.0)),
                    ),
                    Op::Delete { key } => TxnOp::delete(self.full(&key), None),
                })
                .collect();
            let mut kv = self.client.kv_client();
            let resp = self
                .call(kv.txn(EtcdTxn::new().when(compares).and_then(ops)))
                .await
                .map_err(|e| match lease {
                    Some(lease) if is_lease_not_found(&e) => StoreError::LeaseNotFound(lease),
                    _ => e,
                })?;
            Ok(TxnResult {
                applied: resp.succeeded(),
                revision: revision_of(resp.header())?,
            })
        })
    }

    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<Lease>> {
        Box::pin(async move {
            let mut lease = self.client.lease_client();
            let resp = self.call(lease.grant(ttl_seconds(ttl), None)).await?;
            Ok(Lease {
                id: LeaseId(resp.id()),
                ttl: Duration::from_secs(resp.ttl().max(1).unsigned_abs()),
            })
        })
    }

    fn keep_alive_once(&self, id: LeaseId) -> BoxFuture<'_, Result<Duration>> {
        Box::pin(async move {
            let mut lease = self.client.lease_client();
            // Opening the keep-alive stream sends one keep-alive and checks
            // that the lease exists; a second one reads the TTL back.
            let once = async {
                let (mut keeper, mut stream) = lease.keep_alive(id.0).await?;
                keeper.keep_alive().await?;
                stream.message().await
            };
            let resp = self.call(once).await.map_err(|e| {
                if is_lease_not_found(&e) {
                    StoreError::LeaseNotFound(id)
                } else {
                    e
                }
            })?;
            match resp {
                Some(resp) if resp.ttl() > 0 => Ok(Duration::from_secs(resp.ttl().unsigned_abs())),
                Some(_) => Err(StoreError::LeaseNotFound(id)),
                None => Err(StoreError::Unavailable("keep-alive stream ended".into())),
            }
        })
    }

    fn revoke(&self, id: LeaseId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut lease = self.client.lease_client();
            match self.call(lease.revoke(id.0)).await {
                Ok(_) => Ok(()),
                Err(e) if is_lease_not_found(&e) => Err(StoreError::LeaseNotFound(id)),
                Err(e) => Err(e),
            }
        })
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: Revision,
    ) -> BoxFuture<'a, Result<Watch>> {
        Box::pin(async move {
            let mut client = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES);
            let mut options = WatchOptions::new().with_prefix();
            if from_revision > 0 {
                options = options.with_start_revision(from_revision);
            }
            let stream = self
                .call(client.watch(self.full(prefix), Some(options)))
                .await?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(forward_watch(self.clone(), stream, from_revision, tx));
            Ok(Watch::new(rx))
        })
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            self.call(kv.compact(revision, None)).await.map(|_| ())
        })
    }
}

/// Moves one etcd watch's events to its [`Watch`] until either side ends.
async fn forward_watch(
    store: EtcdStore,
    mut stream: etcd_client::WatchStream,
    from_revision: Revision,
    tx: mpsc::UnboundedSender<Result<WatchEvent>>,
) {
    loop {
        let message = tokio::select! {
            () = tx.closed() => return,
            message = stream.message() => message,
        };
        let resp = match message {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                let _ = tx.send(Err(StoreError::Unavailable("etcd ended the watch".into())));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(map_err(e)));
                return;
            }
        };
        if resp.compact_revision() > 0 {
            let _ = tx.send(Err(StoreError::Compacted {
                requested: from_revision,
                compacted: resp.compact_revision(),
            }));
            return;
        }
        if resp.canceled() {
            let _ = tx.send(Err(StoreError::Unavailable(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            ))));
            return;
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let converted = match event.event_type() {
                etcd_client::EventType::Put => store.key_value(kv).map(WatchEvent::Put),
                etcd_client::EventType::Delete => {
                    store.strip(kv.key()).map(|key| WatchEvent::Delete {
                        key,
                        revision: kv.mod_revision(),
                    })
                }
            };
            let failed = converted.is_err();
            if tx.send(converted).is_err() || failed {
                return;
            }
        }
    }
}
