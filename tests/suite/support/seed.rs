//! The deterministic seed image pushed into every test registry:
//! `library/alpine:latest`, an OCI image manifest with one config blob and
//! one layer blob (a tiny gzip'd tar holding a single text file).
//!
//! Every byte is computed from constants, so the digests are identical on
//! every run and every machine with the same build.

use std::io::Write;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub struct SeedImage {
    pub layer: Vec<u8>,
    pub layer_diff_id: String,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

pub fn image() -> &'static SeedImage {
    static IMAGE: OnceLock<SeedImage> = OnceLock::new();
    IMAGE.get_or_init(build)
}

fn build() -> SeedImage {
    let tar = tar_one_file("hello.txt", b"hello from the regharness seed image\n");
    let layer_diff_id = sha256_digest(&tar);
    let layer = gzip(&tar);

    // Written by hand (not through serde_json) so that the byte layout, and
    // therefore the digest, never depends on serde_json's feature flags.
    let config = format!(
        concat!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","#,
            r#""config":{{"Cmd":["/bin/sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}},"#,
            r#""rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"#,
            r#""history":[{{"created":"2024-01-01T00:00:00Z","created_by":"regharness seed"}}]}}"#
        ),
        diff_id = layer_diff_id
    )
    .into_bytes();

    let manifest = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","#,
            r#""config":{{"mediaType":"{cmt}","digest":"{cd}","size":{cs}}},"#,
            r#""layers":[{{"mediaType":"{lmt}","digest":"{ld}","size":{ls}}}]}}"#
        ),
        mt = OCI_MANIFEST_MEDIA_TYPE,
        cmt = OCI_CONFIG_MEDIA_TYPE,
        cd = sha256_digest(&config),
        cs = config.len(),
        lmt = OCI_LAYER_MEDIA_TYPE,
        ld = sha256_digest(&layer),
        ls = layer.len(),
    )
    .into_bytes();

    SeedImage {
        layer,
        layer_diff_id,
        config,
        manifest,
    }
}

/// A POSIX ustar archive holding one regular file (mode 0644, root:root,
/// fixed mtime).
fn tar_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        // N-1 octal digits followed by NUL.
        let digits = field.len() - 1;
        let s = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    }

    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 1_704_067_200); // mtime 2024-01-01
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    // Checksum: computed with the checksum field set to spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(s.as_bytes());

    let mut out = header.to_vec();
    out.extend_from_slice(content);
    let pad = (512 - content.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend(std::iter::repeat_n(0u8, 1024)); // end-of-archive marker
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip into a Vec cannot fail");
    enc.finish().expect("gzip into a Vec cannot fail")
}
