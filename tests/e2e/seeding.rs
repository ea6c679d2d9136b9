//! `chorus session create --template NAME` and `--from DIR`: a session
//! that starts with files, served by a hub like any other.

use crate::access::{create_session_with, start_token_hub};
use crate::support::hub::log_dir;
use crate::support::hub_client::hub_text_with_token;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_starts_with_a_template_or_a_folder() {
    let test = "a_session_starts_with_a_template_or_a_folder";
    let data = log_dir(&format!("{test}-data"));
    let store = ["--data", data.to_str().expect("utf-8 path")];

    let project = log_dir(&format!("{test}-project"));
    std::fs::create_dir_all(project.join("sub")).unwrap();
    std::fs::write(project.join("main.py"), "import helper\nhelper.hi()\n").unwrap();
    std::fs::write(project.join("helper.py"), "def hi():\n    print('hi')\n").unwrap();
    std::fs::write(project.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(project.join("debug.log"), "not for sharing\n").unwrap();
    std::fs::write(
        project.join("sub/logo.png"),
        [0x89, b'P', b'N', b'G', 0, 0xff],
    )
    .unwrap();

    let starter = create_session_with(&store, "starter", &["--template", "python"]).await;
    let folder =
        create_session_with(&store, "folder", &["--from", project.to_str().unwrap()]).await;
    let hub = start_token_hub(test, &data).await;

    let greeting = include_str!("../../hub-server/templates/python/greeting.py");
    let (rev, text) = hub_text_with_token(&hub.url, "starter", "greeting.py", Some(&starter.join))
        .await
        .expect("the starter's greeting.py");
    assert_eq!((rev, text.as_str()), (0, greeting));

    let (_, helper) = hub_text_with_token(&hub.url, "folder", "helper.py", Some(&folder.join))
        .await
        .expect("the folder's helper.py");
    assert_eq!(helper, "def hi():\n    print('hi')\n");
    // Listed: three documents; the ignored log is not one, nor the PNG.
    let listed = crate::access::session_cli(&store, &["list"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with("folder "))
        .unwrap_or_else(|| panic!("folder not listed: {listed}"));
    assert!(line.split_whitespace().any(|w| w == "3"), "{line}");
}
