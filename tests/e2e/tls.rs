//! `wss://`: a hub with a certificate (from a private CA made here with
//! rcgen), proxies that trust that CA through `--hub-ca`, and one that does
//! not and says why.

use std::time::Duration;

use crate::access::wait_message;
use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::eventually;
use crate::support::hub::{log_dir, Hub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_sync_over_wss_with_a_private_ca() {
    let test = "editors_sync_over_wss";
    let dir = log_dir(&format!("{test}-certs"));
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Chorus test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let hub_key = rcgen::KeyPair::generate().unwrap();
    let hub_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&hub_key, &issuer)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join("hub.pem"),
        dir.join("hub-key.pem"),
    );
    std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&cert_pem, hub_cert.pem()).unwrap();
    std::fs::write(&key_pem, hub_key.serialize_pem()).unwrap();

    let hub = Hub::start_in_memory(
        test,
        &[
            "--tls-cert",
            cert_pem.to_str().unwrap(),
            "--tls-key",
            key_pem.to_str().unwrap(),
        ],
    )
    .await;
    assert!(hub.url.starts_with("wss://"), "{}", hub.url);
    // The certificate names localhost, so that is the name to dial.
    let url = format!("wss://localhost:{}/", hub.port);
    let trusting = |kind, name: &str| {
        let mut options = EditorOptions::new(kind, &hub, "secure", name);
        options.hub_url = url.clone();
        options.extra_args = vec!["--hub-ca".into(), ca_pem.to_string_lossy().into_owned()];
        options
    };
    let a = Editor::start_with(trusting(EditorKind::VsCode, "a"), &hub.log_dir).await;
    let b = Editor::start_with(trusting(EditorKind::Neovim, "b"), &hub.log_dir).await;
    let doc = "secret.txt";
    a.open(doc, "over tls\n");
    // a seeds the document before b opens it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while a.document_state(doc).await.map(|s| s["joined"] == true) != Ok(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a never joined over wss:\n{}",
            a.client().log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.open(doc, "");
    assert!(
        eventually(Duration::from_secs(15), || b.text(doc).as_deref()
            == Some("over tls\n"))
        .await,
        "b never got a's text over wss: {:?}\nproxy log:\n{}",
        b.text(doc),
        b.client().log_tail(30)
    );
    a.insert_after(doc, "over", " encrypted");
    b.insert_before(doc, "over", "sent ");
    let agreed = || {
        let (ta, tb) = (a.text(doc), b.text(doc));
        ta == tb && ta.as_deref() == Some("sent over encrypted tls\n")
    };
    assert!(
        eventually(Duration::from_secs(15), agreed).await,
        "no convergence over wss: a={:?} b={:?}",
        a.text(doc),
        b.text(doc)
    );

    // Without the CA, the certificate is not trusted, and the user hears so.
    let mut options = EditorOptions::new(EditorKind::Helix, &hub, "secure", "c");
    options.hub_url = url.clone();
    let c = Editor::start_with(options, &hub.log_dir).await;
    wait_message(&c, "certificate").await;
}
