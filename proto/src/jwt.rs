//! JSON Web Token keys and algorithms as configured on a `jwt` provider: parsed here once, for
//! validation (a provider whose keys do not parse is refused) and for the data plane's compile
//! (what validation accepted parses the same way).

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, JwkSet},
};

use crate::v1;

/// The algorithms a provider may allow. `none` is not one of them, in any spelling.
pub const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// The algorithm named `name` (exact spelling), if a provider may allow it.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS.contains(&name).then(|| name.parse().ok())?
}

/// One verification key: its `kid`, and the one algorithm it is for when its JWK says so.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub algorithm: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("family", &self.key.family())
            .finish()
    }
}

/// The keys a provider holds inline (`jwks` or `keyPem`); empty for remote keys.
pub fn inline_keys(provider: &v1::JwtProvider) -> Result<Vec<Key>, String> {
    if !provider.jwks.is_empty() {
        return keys_of_jwks(&provider.jwks);
    }
    if !provider.key_pem.is_empty() {
        return key_of_pem(&provider.key_pem).map(|key| vec![key]);
    }
    Ok(Vec::new())
}

/// The keys of a JWKS document. Keys of a type we cannot use are an error (a typo in a key
/// would otherwise refuse every token signed with it, silently).
pub fn keys_of_jwks(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("is not a JWKS document: {e}"))?;
    if set.keys.is_empty() {
        return Err("holds no keys".into());
    }
    set.keys
        .iter()
        .enumerate()
        .map(|(i, jwk)| {
            if matches!(jwk.algorithm, AlgorithmParameters::Other(_)) {
                return Err(format!(
                    "key {i}: a key type the gateway cannot verify with"
                ));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {i}: {e}"))?;
            let algorithm = match &jwk.common.key_algorithm {
                None => None,
                Some(named) => Some(
                    algorithm(&named.to_string())
                        .filter(|a| a.family() == key.family())
                        .ok_or_else(|| {
                            format!("key {i}: \"alg\": {named} is not for this key's type")
                        })?,
                ),
            };
            Ok(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect()
}

/// A PEM public key: RSA (SPKI or PKCS#1), EC or Ed25519 (SPKI).
pub fn key_of_pem(pem: &str) -> Result<Key, String> {
    let pem = pem.as_bytes();
    let key = DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| "is not a PEM RSA, EC or Ed25519 public key".to_owned())?;
    Ok(Key {
        kid: None,
        algorithm: None,
        key,
    })
}
