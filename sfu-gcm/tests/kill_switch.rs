//! The operator's switch back to aws-lc. In its own test binary: it changes process-wide state
//! that the other tests rely on.

use sfu_gcm::{Aes128Gcm, Implementation, implementation_for_new_keys, set_kernel_enabled};

#[test]
fn turning_the_kernel_off_makes_new_keys_use_aws_lc_and_keeps_the_bytes() {
    let before = Aes128Gcm::new(&[3; 16]).unwrap();
    let expected = implementation_for_new_keys();
    assert_eq!(before.implementation(), expected);

    set_kernel_enabled(false);
    assert_eq!(implementation_for_new_keys(), Implementation::AwsLc);
    let after = Aes128Gcm::new(&[3; 16]).unwrap();
    assert_eq!(after.implementation(), Implementation::AwsLc);
    // A key made before keeps its implementation; both give the same bytes.
    assert_eq!(before.implementation(), expected);
    let (mut a, mut b) = (vec![9u8; 1200], vec![9u8; 1200]);
    let tag_a = before.seal_in_place(&[1; 12], b"hdr", &mut a).unwrap();
    let tag_b = after.seal_in_place(&[1; 12], b"hdr", &mut b).unwrap();
    assert_eq!((a, tag_a), (b, tag_b));

    set_kernel_enabled(true);
    assert_eq!(implementation_for_new_keys(), expected);
    assert_eq!(Aes128Gcm::new(&[3; 16]).unwrap().implementation(), expected);
}
