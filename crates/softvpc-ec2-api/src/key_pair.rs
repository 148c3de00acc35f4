//! Create/Import/Describe/DeleteKeyPair over [`softvpc_model::key_pair`], and the key material
//! itself: generating RSA (2048 bits, as AWS) and Ed25519 keys, the private key in the format
//! asked (`pem`: PKCS#1 for RSA, OpenSSH's for Ed25519, as AWS answers; `ppk`: PuTTY's version 2
//! file, unencrypted), reading imported public keys (OpenSSH's one-line form, RFC 4716's SSH2
//! form, or base64 DER for RSA) and AWS's fingerprints:
//! - created RSA: SHA-1 of the private key's PKCS#8 DER, colon-separated hex;
//! - imported RSA: MD5 of the public key's DER (SubjectPublicKeyInfo), colon-separated hex;
//! - Ed25519 (both): base64 SHA-256 of the SSH public key blob (OpenSSH's default since 6.8).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::rngs::OsRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use softvpc_ec2_protocol::Value;
use ssh_key::private::Ed25519Keypair;
use ssh_key::public::KeyData;
use ssh_key::{LineEnding, PrivateKey, PublicKey};

use super::input::{self, ValueExt};
use super::Ctx;
use softvpc_model::key_pair::{self, KeyPair};
use softvpc_model::ApiError;

/// The RSA key size CreateKeyPair makes (AWS's).
const RSA_BITS: usize = 2048;
/// The RSA key sizes ImportKeyPair takes (AWS: 1024 to 4096 bits).
const RSA_IMPORT_BITS: std::ops::RangeInclusive<usize> = 1024..=4096;

/// A key made by CreateKeyPair: what the caller gets once, and what is stored.
pub struct NewKey {
    /// The private key in the format asked.
    pub material: String,
    /// The public key, OpenSSH's one-line form without comment.
    pub public_key: String,
    /// AWS's fingerprint.
    pub fingerprint: String,
}

/// A public key read by ImportKeyPair.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportedKey {
    /// `rsa` or `ed25519`.
    pub key_type: &'static str,
    /// OpenSSH's one-line form without comment.
    pub public_key: String,
    /// AWS's fingerprint.
    pub fingerprint: String,
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ed25519_fingerprint(blob: &[u8]) -> String {
    B64.encode(Sha256::digest(blob))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("key generation failed: {e}"))
}

/// An SSH wire-format `string`: length (u32, big-endian), then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An SSH wire-format `mpint` (RFC 4251): big-endian, a leading zero when the top bit is set.
fn put_mpint(out: &mut Vec<u8>, n: &BigUint) {
    let mut b = n.to_bytes_be();
    if b == [0] {
        b.clear();
    }
    if b.first().is_some_and(|x| x & 0x80 != 0) {
        b.insert(0, 0);
    }
    put_string(out, &b);
}

/// PuTTY's key file, version 2, unencrypted (what AWS serves for `KeyFormat=ppk`): the public
/// and private blobs in base64 (64 characters a line) and the HMAC-SHA-1 over both, keyed by
/// SHA-1("putty-private-key-file-mac-key") since there is no passphrase.
pub fn ppk_v2(algorithm: &str, comment: &str, public_blob: &[u8], private_blob: &[u8]) -> String {
    let mut mac_data = Vec::new();
    for part in [
        algorithm.as_bytes(),
        b"none",
        comment.as_bytes(),
        public_blob,
        private_blob,
    ] {
        put_string(&mut mac_data, part);
    }
    let key = Sha1::digest(b"putty-private-key-file-mac-key");
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(&mac_data);
    let mac: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let lines = |blob: &[u8]| -> Vec<String> {
        let text = B64.encode(blob);
        text.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    };
    let (public, private) = (lines(public_blob), lines(private_blob));
    let mut out = format!(
        "PuTTY-User-Key-File-2: {algorithm}\nEncryption: none\nComment: {comment}\nPublic-Lines: {}\n",
        public.len()
    );
    for l in &public {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("Private-Lines: {}\n", private.len()));
    for l in &private {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("Private-MAC: {mac}\n"));
    out
}

/// The SSH public key blob and OpenSSH line of an RSA public key.
fn rsa_public(key: &RsaPublicKey) -> Result<(Vec<u8>, String), ApiError> {
    let ssh = ssh_key::public::RsaPublicKey::try_from(key).map_err(internal)?;
    let public = PublicKey::from(KeyData::Rsa(ssh));
    let blob = public.to_bytes().map_err(internal)?;
    let line = public.to_openssh().map_err(internal)?;
    Ok((blob, line))
}

/// Makes a key pair of `key_type` (`rsa` or `ed25519`) with its private key in `format`
/// (`pem` or `ppk`), named `name` (the PPK comment).
pub fn generate(key_type: &str, format: &str, name: &str) -> Result<NewKey, ApiError> {
    match key_type {
        "rsa" => {
            let private = RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(internal)?;
            let pkcs8 = private.to_pkcs8_der().map_err(internal)?;
            let fingerprint = colon_hex(&Sha1::digest(pkcs8.as_bytes()));
            let (blob, public_key) = rsa_public(&private.to_public_key())?;
            let material = if format == "ppk" {
                let [p, q] = private.primes() else {
                    return Err(internal("not a two-prime key"));
                };
                // PuTTY's iqmp: the inverse of q modulo p (PKCS#1's coefficient).
                let iqmp = private
                    .crt_coefficient()
                    .ok_or_else(|| internal("no CRT coefficient"))?;
                let mut private_blob = Vec::new();
                for n in [private.d(), p, q, &iqmp] {
                    put_mpint(&mut private_blob, n);
                }
                ppk_v2("ssh-rsa", name, &blob, &private_blob)
            } else {
                private
                    .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                    .map_err(internal)?
                    .to_string()
            };
            Ok(NewKey {
                material,
                public_key,
                fingerprint,
            })
        }
        _ => {
            let pair = Ed25519Keypair::random(&mut OsRng);
            let seed = pair.private.to_bytes();
            let private = PrivateKey::from(pair);
            let public = private.public_key();
            let blob = public.to_bytes().map_err(internal)?;
            let public_key = public.to_openssh().map_err(internal)?;
            let material = if format == "ppk" {
                let mut private_blob = Vec::new();
                put_string(&mut private_blob, &seed);
                ppk_v2("ssh-ed25519", name, &blob, &private_blob)
            } else {
                private
                    .to_openssh(LineEnding::LF)
                    .map_err(internal)?
                    .to_string()
            };
            Ok(NewKey {
                material,
                public_key,
                fingerprint: ed25519_fingerprint(&blob),
            })
        }
    }
}

/// AWS's refusal of public key material it cannot read.
fn bad_format() -> ApiError {
    ApiError::new(
        "InvalidKeyPair.Format",
        "Key is not in valid OpenSSH public key format",
    )
}

/// The SSH blob of an RFC 4716 public key file (`---- BEGIN SSH2 PUBLIC KEY ----`, headers,
/// base64 body, end line).
fn rfc4716_blob(text: &str) -> Option<Vec<u8>> {
    let mut lines = text.lines().map(str::trim);
    if lines.next()? != "---- BEGIN SSH2 PUBLIC KEY ----" {
        return None;
    }
    let mut body = String::new();
    let mut continued = false;
    for line in lines {
        if line == "---- END SSH2 PUBLIC KEY ----" {
            return B64.decode(body.as_bytes()).ok();
        }
        // A header line (`Key: value`), or its continuation after a trailing backslash.
        if continued || line.contains(':') {
            continued = line.ends_with('\\');
            continue;
        }
        body.push_str(line);
    }
    None
}

/// Reads ImportKeyPair's `PublicKeyMaterial` (already base64-decoded): an OpenSSH line, an
/// RFC 4716 file, or (RSA only) a DER or PEM SubjectPublicKeyInfo. Only RSA (1024 to 4096 bits)
/// and Ed25519 keys are taken, as on AWS.
pub fn parse_public(material: &[u8]) -> Result<ImportedKey, ApiError> {
    // DER: a SEQUENCE, never text.
    if material.first() == Some(&0x30) {
        let key = RsaPublicKey::from_public_key_der(material).map_err(|_| bad_format())?;
        return rsa_imported(&key);
    }
    let text = std::str::from_utf8(material)
        .map_err(|_| bad_format())?
        .trim();
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        let key = RsaPublicKey::from_public_key_pem(text).map_err(|_| bad_format())?;
        return rsa_imported(&key);
    }
    let public = match rfc4716_blob(text) {
        Some(blob) => PublicKey::from_bytes(&blob),
        None => PublicKey::from_openssh(text),
    }
    .map_err(|_| bad_format())?;
    match public.key_data() {
        KeyData::Rsa(k) => {
            // Not `RsaPublicKey::try_from(k)`: ssh-key refuses keys under 2048 bits there, and
            // ImportKeyPair takes 1024 to 4096 (as the DER and PEM paths do; the fuzz target
            // ec2_key_material found a 1024-bit DER key whose own OpenSSH line was refused).
            let n = BigUint::try_from(&k.n).map_err(|_| bad_format())?;
            let e = BigUint::try_from(&k.e).map_err(|_| bad_format())?;
            let key = RsaPublicKey::new(n, e).map_err(|_| bad_format())?;
            rsa_imported(&key)
        }
        KeyData::Ed25519(_) => {
            let blob = public.to_bytes().map_err(|_| bad_format())?;
            let bare = PublicKey::new(public.key_data().clone(), "");
            Ok(ImportedKey {
                key_type: "ed25519",
                public_key: bare.to_openssh().map_err(|_| bad_format())?,
                fingerprint: ed25519_fingerprint(&blob),
            })
        }
        _ => Err(bad_format()),
    }
}

fn rsa_imported(key: &RsaPublicKey) -> Result<ImportedKey, ApiError> {
    if !RSA_IMPORT_BITS.contains(&(key.n().bits())) {
        return Err(bad_format());
    }
    let der = key.to_public_key_der().map_err(|_| bad_format())?;
    let (_, public_key) = rsa_public(key)?;
    Ok(ImportedKey {
        key_type: "rsa",
        public_key,
        fingerprint: colon_hex(&Md5::digest(der.as_bytes())),
    })
}

/// The `tagSet` as AWS answers it: absent when there are no tags.
fn tags_opt(tags: &softvpc_model::Tags) -> Option<Value> {
    (!tags.is_empty()).then(|| input::tag_set(tags))
}

fn key_value(k: &KeyPair, include_public_key: bool) -> Value {
    Value::new_struct()
        .with("KeyPairId", k.id.as_str())
        .with("KeyType", k.key_type.as_str())
        .with_opt("Tags", tags_opt(&k.tags))
        .with_opt("PublicKey", include_public_key.then(|| k.openssh_line()))
        .with("CreateTime", input::timestamp(k.create_time))
        .with("KeyName", k.name.as_str())
        .with("KeyFingerprint", k.fingerprint.as_str())
}

/// `CreateKeyPair`: a new key; the private key is in the answer only, never stored.
pub fn create_key_pair(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let name = input::required(input, "KeyName")?;
    let tags = input::creation_tags(input, "key-pair")?;
    let key_type = input.get_str("KeyType").unwrap_or("rsa");
    let format = input.get_str("KeyFormat").unwrap_or("pem");
    // Refuse a taken or bad name before spending the key generation on it.
    key_pair::check_new_name(&ctx.cp.state(), name)?;
    let key = if ctx.dry_run {
        NewKey {
            material: String::new(),
            public_key: String::new(),
            fingerprint: String::new(),
        }
    } else {
        generate(key_type, format, name)?
    };
    let k = ctx.mutate(|t| {
        key_pair::create_key_pair(
            t,
            name,
            key_type,
            key.fingerprint.clone(),
            key.public_key.clone(),
            tags.clone(),
        )
    })?;
    tracing::info!(key_pair = %k.id, name = %k.name, key_type, "key pair created");
    Ok(Value::new_struct()
        .with("KeyPairId", k.id.as_str())
        .with_opt("Tags", tags_opt(&k.tags))
        .with("KeyName", k.name.as_str())
        .with("KeyFingerprint", k.fingerprint.as_str())
        .with("KeyMaterial", key.material))
}

/// `ImportKeyPair`: a public key given by the caller.
pub fn import_key_pair(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let name = input::required(input, "KeyName")?;
    let tags = input::creation_tags(input, "key-pair")?;
    let material = input::required(input, "PublicKeyMaterial")?;
    let bytes = B64
        .decode(material.trim().as_bytes())
        .map_err(|_| bad_format())?;
    let key = parse_public(&bytes)?;
    let k = ctx.mutate(|t| {
        key_pair::create_key_pair(
            t,
            name,
            key.key_type,
            key.fingerprint.clone(),
            key.public_key.clone(),
            tags.clone(),
        )
    })?;
    tracing::info!(key_pair = %k.id, name = %k.name, key_type = key.key_type, "key pair imported");
    Ok(Value::new_struct()
        .with("KeyFingerprint", k.fingerprint.as_str())
        .with("KeyName", k.name.as_str())
        .with("KeyPairId", k.id.as_str())
        .with_opt("Tags", tags_opt(&k.tags)))
}

/// `DescribeKeyPairs`: by names, ids and filters; `IncludePublicKey` adds the OpenSSH line.
pub fn describe_key_pairs(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let names = input::id_list(input, "KeyNames");
    let filters = input::filters(input)?;
    // Names are resolved to ids first (the first unknown one is refused, as AWS does).
    let mut ids = input::id_list(input, "KeyPairIds");
    for n in &names {
        let k = key_pair::by_name(&state, n).ok_or_else(|| key_pair::name_not_found(n))?;
        ids.push(k.id.clone());
    }
    let items = input::select(
        &state,
        &state.key_pairs,
        &ids,
        ("InvalidKeyPair.NotFound", "key pair"),
        &filters,
    )?;
    let include = input.get_bool("IncludePublicKey").unwrap_or(false);
    Ok(Value::new_struct().with(
        "KeyPairs",
        input::list_of(&items, |k| key_value(k, include)),
    ))
}

/// `DeleteKeyPair` by name or id.
pub fn delete_key_pair(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let name = input::optional(input, "KeyName");
    let id = input::optional(input, "KeyPairId");
    let deleted = ctx.mutate(|t| key_pair::delete_key_pair(t, name, id))?;
    if let Some(id) = &deleted {
        tracing::info!(key_pair = %id, "key pair deleted");
    }
    Ok(Value::new_struct()
        .with("Return", true)
        .with_opt("KeyPairId", deleted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rsa_keys_have_aws_fingerprints_and_formats() {
        let k = generate("rsa", "pem", "k").unwrap();
        assert!(k.material.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(k.public_key.starts_with("ssh-rsa AAAA"));
        // SHA-1 of the PKCS#8 DER of the private key, recomputed from the PEM given out.
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let private = RsaPrivateKey::from_pkcs1_pem(&k.material).unwrap();
        assert_eq!(private.size() * 8, RSA_BITS);
        let der = private.to_pkcs8_der().unwrap();
        assert_eq!(k.fingerprint, colon_hex(&Sha1::digest(der.as_bytes())));
        assert_eq!(k.fingerprint.len(), 20 * 3 - 1);
        // Importing its public key gives the MD5 of the public DER instead.
        let imported = parse_public(k.public_key.as_bytes()).unwrap();
        assert_eq!(imported.key_type, "rsa");
        assert_eq!(imported.public_key, k.public_key);
        let spki = private.to_public_key().to_public_key_der().unwrap();
        assert_eq!(
            imported.fingerprint,
            colon_hex(&Md5::digest(spki.as_bytes()))
        );
        // The same key as DER, PEM and RFC 4716 reads the same.
        assert_eq!(parse_public(spki.as_bytes()).unwrap(), imported);
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert_eq!(parse_public(pem.as_bytes()).unwrap(), imported);
        let body = k.public_key.split(' ').nth(1).unwrap();
        let rfc = format!(
            "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"a very long \\\ncomment\"\n{}\n{}\n---- END SSH2 PUBLIC KEY ----\n",
            &body[..64],
            &body[64..]
        );
        assert_eq!(parse_public(rfc.as_bytes()).unwrap(), imported);
    }

    #[test]
    fn ppk_files_carry_the_key_and_a_valid_mac() {
        for (t, alg) in [("rsa", "ssh-rsa"), ("ed25519", "ssh-ed25519")] {
            let k = generate(t, "ppk", "my key").unwrap();
            let lines: Vec<&str> = k.material.lines().collect();
            assert_eq!(lines[0], format!("PuTTY-User-Key-File-2: {alg}"));
            assert_eq!(lines[1], "Encryption: none");
            assert_eq!(lines[2], "Comment: my key");
            let n: usize = lines[3]
                .strip_prefix("Public-Lines: ")
                .unwrap()
                .parse()
                .unwrap();
            let public = B64.decode(lines[4..4 + n].concat()).unwrap();
            assert_eq!(
                public,
                B64.decode(k.public_key.split(' ').nth(1).unwrap()).unwrap()
            );
            let m: usize = lines[4 + n]
                .strip_prefix("Private-Lines: ")
                .unwrap()
                .parse()
                .unwrap();
            let private = B64.decode(lines[5 + n..5 + n + m].concat()).unwrap();
            let again = ppk_v2(alg, "my key", &public, &private);
            assert_eq!(again, k.material);
            assert!(lines[5 + n + m].starts_with("Private-MAC: "));
        }
    }

    /// Regression (fuzz target ec2_key_material, seed rsa1024.der): a 1024-bit RSA key reads
    /// the same as DER, PEM, its OpenSSH line and RFC 4716 (ssh-key alone refuses it under
    /// 2048 bits); 1023 bits are refused in every form.
    #[test]
    fn rsa_1024_imports_in_every_form() {
        let der = include_bytes!("../../../fuzz/seeds/ec2_key_material/rsa1024.der");
        let from_der = parse_public(der).unwrap();
        assert_eq!(from_der.key_type, "rsa");
        let from_line = parse_public(from_der.public_key.as_bytes()).unwrap();
        assert_eq!(from_line, from_der);
        let key = RsaPublicKey::from_public_key_der(der).unwrap();
        let pem = key.to_public_key_pem(Default::default()).unwrap();
        assert_eq!(parse_public(pem.as_bytes()).unwrap(), from_der);
        let (blob, _) = rsa_public(&key).unwrap();
        let rfc4716 = format!(
            "---- BEGIN SSH2 PUBLIC KEY ----\n{}\n---- END SSH2 PUBLIC KEY ----\n",
            B64.encode(&blob)
        );
        assert_eq!(parse_public(rfc4716.as_bytes()).unwrap(), from_der);

        let small = RsaPrivateKey::new(&mut OsRng, 1023)
            .unwrap()
            .to_public_key();
        let (_, line) = rsa_public(&small).unwrap();
        assert!(parse_public(line.as_bytes()).is_err());
        let der = small.to_public_key_der().unwrap();
        assert!(parse_public(der.as_bytes()).is_err());
    }

    #[test]
    fn rsa_ppk_iqmp_is_q_inverse_mod_p() {
        let private = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let [p, q] = private.primes() else { panic!() };
        let iqmp = private.crt_coefficient().unwrap();
        assert_eq!((q * &iqmp) % p, BigUint::from(1u8));
    }

    #[test]
    fn ed25519_keys_have_the_openssh_sha256_fingerprint() {
        let k = generate("ed25519", "pem", "k").unwrap();
        assert!(k
            .material
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let private = PrivateKey::from_openssh(&k.material).unwrap();
        let public = private.public_key();
        // OpenSSH prints the same digest unpadded, after "SHA256:".
        let openssh = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        assert_eq!(
            format!("SHA256:{}", k.fingerprint.trim_end_matches('=')),
            openssh
        );
        assert_eq!(k.fingerprint.len(), 44);
        let imported = parse_public(format!("{} me@host", k.public_key).as_bytes()).unwrap();
        assert_eq!(imported.key_type, "ed25519");
        assert_eq!(imported.fingerprint, k.fingerprint);
        assert_eq!(imported.public_key, k.public_key);
    }

    #[test]
    fn refuses_what_aws_refuses() {
        for bad in [
            &b""[..],
            b"ssh-rsa",
            b"ssh-rsa AAAA",
            b"not a key",
            b"\x30\x03\x02\x01\x00",
            b"---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n",
            // An ECDSA key (AWS imports only RSA and Ed25519).
            b"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEs1YzC6kWq8FZbmVr/9Bbx1eq9yhl6xUGRnxt0bsmLBWbOQ5e0wh1QvYfeQNQ8H8+1TrwEWhKEOBThWj0yOzqA= x",
        ] {
            assert_eq!(
                parse_public(bad).unwrap_err().code,
                "InvalidKeyPair.Format",
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A 768-bit RSA key is too short.
        let small = RsaPrivateKey::new(&mut OsRng, 768).unwrap().to_public_key();
        let der = small.to_public_key_der().unwrap();
        assert_eq!(
            parse_public(der.as_bytes()).unwrap_err().code,
            "InvalidKeyPair.Format"
        );
    }

    proptest! {
        #[test]
        fn parse_public_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_public(&bytes);
        }

        #[test]
        fn parse_public_never_panics_on_near_keys(
            prefix in prop_oneof![
                Just("ssh-rsa "), Just("ssh-ed25519 "), Just("---- BEGIN SSH2 PUBLIC KEY ----\n"),
                Just("-----BEGIN PUBLIC KEY-----\n"),
            ],
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(B64.encode(&body).as_bytes());
            let _ = parse_public(&text);
        }
    }
}
