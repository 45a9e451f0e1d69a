//! (j) The store conformance suite of the control plane, on both stores.

use std::sync::Arc;

use gateway_control_plane::store::{EmbeddedStore, EtcdStore, conformance};
use integration_tests::{Etcd, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_passes_the_conformance_suite() {
    let etcd = Etcd::start().await;
    let store = EtcdStore::connect(&[etcd.endpoint()], &unique_prefix())
        .await
        .expect("connect the etcd store");
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    conformance::run_all(Arc::new(store)).await;
}
