//! The example tree the README's first command runs on stays a faithful shape-7 fixture.
use crate::common;

use astpatch::patch::sites::{self, PatchState};

#[test]
fn example_tree_is_an_unpatched_shape_7_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/asterisk-11.23.1");
    let bytes = std::fs::read(root.join("channels/chan_sip.c")).unwrap();
    if std::env::var_os("ASTPATCH_REGENERATE_EXAMPLE").is_some() {
        std::fs::write(
            root.join("channels/chan_sip.c"),
            common::fixtures::chan_sip(&common::fixtures::spec("7", "11.23.1")),
        )
        .unwrap();
        return;
    }
    assert_eq!(
        bytes,
        common::fixtures::chan_sip(&common::fixtures::spec("7", "11.23.1"))
    );
    let scan = sites::scan(&bytes);
    assert_eq!(scan.state(), PatchState::Unpatched);
    assert_eq!(scan.shape(), Some("7"));
    assert_eq!(
        std::fs::read_to_string(root.join(".version"))
            .unwrap()
            .trim(),
        "11.23.1"
    );
}
