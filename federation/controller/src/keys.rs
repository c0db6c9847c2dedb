//! Where the controller keeps its state in the store. Every key of a trust
//! domain lives under the store's own namespace (etcd) or data directory
//! (embedded).
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `ca/root` | [`crate::ca::StoredRoot`] JSON (certificate and key, PEM): the root every replica issues from | the leader, once (CAS: absent); swapped with `ca/standby` by a rotation |
//! | `ca/standby` | the same: the other root in the bundle while a rotation runs | rotate start (CAS: absent); the rotation |
//! | `rotation/current` | the rotation under way (`Rotation`, protobuf) | rotate start/abort/resume; the leader's driver (CAS, fenced) |
//! | `rotation/history/<id>` | finished rotations (completed, aborted, refused) | the leader's driver; rotate start (refused) |
//! | `replicas/<node>` | [`crate::rotation::Replica`] JSON, under the replica's lease: the root its own SVID chains to | each replica |
//! | `bundle/own` | [`crate::ca::PublishedBundle`] JSON | the leader |
//! | `resources/meta` | a counter: the resource set's revision, compared by every apply | apply |
//! | `resources/<Kind>/<name>` | the resource's store form (YAML) | apply (CAS on `resources/meta`) |
//! | `config/snapshot` | the compiled `ConfigSnapshot` (protobuf), with its version | the leader (CAS) |
//! | `peer-bundles/<peering>` | [`crate::peers::HeldPeerBundle`] JSON: the peer's bundle we hold (document, sequence, digest), since when | the leader (first bundle, refreshes); any replica receiving an announcement (CAS) |
//! | `peer-exports/<peering>` | [`crate::federation::PeerExports`] JSON: what the peer last announced it exports to us | the replica that received the announcement |
//! | `tokens/<id>` | [`crate::tokens::StoredToken`] JSON (secret hashed) | create token; deleted (CAS) when used |
//! | `tokens-used/<id>` | the gateway and time of use | join |
//! | `gateways/<name>` | [`crate::gateways::GatewayRecord`] JSON: ID, last SVID | join, renew |
//! | `forgotten/<name>` | [`crate::forgotten::Tombstone`] JSON: a gateway forgotten by `causeway gateways forget`: its ID, the serials of the SVIDs it held, when and by whom; Renew and the config stream refuse its SVIDs | gateways forget (with the delete of `gateways/<name>`, CAS: not connected); kept through a new Join of the name (only SVIDs issued before the forget are refused); swept by the leader an hour after the last of them expires |
//! | `connected/<name>` | [`crate::gateways::StreamStatus`] JSON, under the serving replica's lease | the config stream |

pub(crate) const CA: &str = "ca/";
pub(crate) const ROOT: &str = "ca/root";
pub(crate) const STANDBY: &str = "ca/standby";
pub(crate) const ROTATION: &str = "rotation/current";
pub(crate) const ROTATION_HISTORY: &str = "rotation/history/";
pub(crate) const REPLICAS: &str = "replicas/";
pub(crate) const OWN_BUNDLE: &str = "bundle/own";
pub(crate) const RESOURCES: &str = "resources/";
pub(crate) const RESOURCES_META: &str = "resources/meta";
pub(crate) const SNAPSHOT: &str = "config/snapshot";
pub(crate) const PEER_BUNDLES: &str = "peer-bundles/";
pub(crate) const PEER_EXPORTS: &str = "peer-exports/";
pub(crate) const TOKENS: &str = "tokens/";
pub(crate) const TOKENS_USED: &str = "tokens-used/";
pub(crate) const GATEWAYS: &str = "gateways/";
pub(crate) const CONNECTED: &str = "connected/";
pub(crate) const FORGOTTEN: &str = "forgotten/";

pub(crate) fn resource(kind: &str, name: &str) -> String {
    format!("{RESOURCES}{kind}/{name}")
}
