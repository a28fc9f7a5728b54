//! Signature checks for audits, where a log's whole history is verified: [`verify_batch`]
//! checks hundreds of signatures with one multiscalar multiplication, and
//! [`PublicKey::verify_cofactored`] checks one with the same rule, to name the culprit when
//! a batch fails (ADR 0013).
//!
//! Both use the **cofactored** equation `[8](R − [s]B + [h]A) = 0`. The cofactorless one
//! that `verify_strict` uses cannot be batched soundly: a torsion component in `R` or `A`
//! (which only the key's holder can put there) vanishes from a batch with probability
//! 1/2 to 1/8, so a batch could accept what one-by-one checks refuse. With the cofactor,
//! a batch accepts exactly when every signature in it does (up to 2⁻¹²⁸), whatever the
//! batching. Cofactored verification is as unforgeable as the strict one: without the
//! secret key nothing verifies. It accepts more only from the key's holder (a signature
//! whose `R` or key carries torsion), which the write path's `verify_strict` refuses, so
//! no such event enters the log through the API.
//!
//! Before any equation, both refuse what `verify_strict` refuses outright: a small-order
//! key, a non-canonical `s`, a non-canonical or small-order `R`. `R` enters `h` as the bytes
//! of the signature, so no other encoding verifies.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha512};

use super::{PublicKey, Signature, SignatureError};

/// A signature taken apart for an equation, after the refusals every check makes.
struct Parts {
    r: EdwardsPoint,
    s: Scalar,
    /// `H(R ‖ A ‖ M)`, as hashed and reduced.
    hram: [u8; 64],
    h: Scalar,
}

impl Parts {
    /// `key` must have been checked with [`refuse_weak`].
    fn of(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<Self, SignatureError> {
        let (r_bytes, s_bytes) = signature.0.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 bytes");
        let s =
            Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SignatureError)?;
        if !is_canonical_y(&r_bytes) {
            return Err(SignatureError);
        }
        let r = CompressedEdwardsY(r_bytes)
            .decompress()
            .ok_or(SignatureError)?;
        if r.is_small_order() {
            return Err(SignatureError);
        }
        let hram: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key.as_bytes())
            .chain_update(message)
            .finalize()
            .into();
        Ok(Self {
            r,
            s,
            hram,
            h: Scalar::from_bytes_mod_order_wide(&hram),
        })
    }
}

impl PublicKey {
    /// One signature by the audit's rule: `[8](R − [s]B + [h]A) = 0` after the refusals
    /// of `verify_strict` (see the module). What [`verify_batch`] says of a batch is what
    /// this says of each of its signatures.
    pub fn verify_cofactored(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        refuse_weak(self)?;
        let parts = Parts::of(self, message, signature)?;
        let minus_a = -self.0.to_edwards();
        let expected =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&parts.h, &minus_a, &parts.s);
        if (parts.r - expected).mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(SignatureError)
        }
    }
}

/// Verifies many signatures at once (`items`: key, message, signature) by the rule of
/// [`PublicKey::verify_cofactored`]; `Err` when any fails, without saying which.
///
/// The batch equation, with a 128-bit `zᵢ` per signature drawn from a generator seeded
/// with every signature's `hᵢ` and `sᵢ` (so none can be tuned to cancel another):
/// `[8]([−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ_A [Σ_{i signed by A} zᵢhᵢ]A) = 0`. The `A` terms are
/// gathered per key (ed25519-dalek's `verify_batch` keeps one per signature): a log's
/// events are signed by a handful of agents, so the multiplication has about half the
/// points. Regrouping is exact here because the cofactor clears any torsion, on which
/// reducing a coefficient mod ℓ would otherwise act.
pub fn verify_batch(items: &[(PublicKey, &[u8], &Signature)]) -> Result<(), SignatureError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<(&PublicKey, Scalar)> = Vec::new();
    let mut key_of = std::collections::HashMap::new();
    let mut signatures = Vec::with_capacity(items.len()); // (key index, parts)
    let mut seed = Sha512::new();
    seed.update(b"nexysync ed25519 batch");
    for (key, message, signature) in items {
        let key_index = match key_of.get(key.as_bytes()) {
            Some(&index) => index,
            None => {
                refuse_weak(key)?;
                keys.push((key, Scalar::ZERO));
                key_of.insert(key.as_bytes(), keys.len() - 1);
                keys.len() - 1
            }
        };
        let parts = Parts::of(key, message, signature)?;
        seed.update(parts.hram);
        seed.update(parts.s.as_bytes());
        signatures.push((key_index, parts));
    }
    let seed: [u8; 64] = seed.finalize().into();
    let mut rng = rand::rngs::StdRng::from_seed(seed[..32].try_into().expect("32 bytes"));
    let mut b_coefficient = Scalar::ZERO;
    let mut zs = Vec::with_capacity(signatures.len());
    let mut rs = Vec::with_capacity(signatures.len());
    for (key_index, parts) in signatures {
        let mut z = [0u8; 16];
        rng.fill_bytes(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        b_coefficient -= z * parts.s;
        keys[key_index].1 += z * parts.h;
        zs.push(z);
        rs.push(parts.r);
    }
    let scalars = std::iter::once(b_coefficient)
        .chain(zs)
        .chain(keys.iter().map(|(_, coefficient)| *coefficient));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(rs)
        .chain(keys.iter().map(|(key, _)| key.0.to_edwards()));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SignatureError)
    }
}

/// Refuses a small-order key, as `verify_strict` does (once per key in a batch).
fn refuse_weak(key: &PublicKey) -> Result<(), SignatureError> {
    if key.0.is_weak() {
        Err(SignatureError)
    } else {
        Ok(())
    }
}

/// Whether the 32-byte point encoding has its `y` below the field prime `2²⁵⁵ − 19` (the
/// sign bit aside), as `verify_strict` requires of `R` by comparing encodings.
fn is_canonical_y(encoding: &[u8; 32]) -> bool {
    let top = encoding[31] & 0x7f;
    // y ≥ p exactly when y is one of 2²⁵⁵ − 19 … 2²⁵⁵ − 1: every byte 0xff (the top one
    // 0x7f) but the lowest, which is at least 0xed.
    !(top == 0x7f && encoding[1..31].iter().all(|&b| b == 0xff) && encoding[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;

    use super::super::SigningKey;
    use super::*;

    fn batch(items: &[(PublicKey, Vec<u8>, Signature)]) -> Result<(), SignatureError> {
        let borrowed: Vec<_> = items
            .iter()
            .map(|(k, m, s)| (*k, m.as_slice(), s))
            .collect();
        verify_batch(&borrowed)
    }

    fn one_by_one(items: &[(PublicKey, Vec<u8>, Signature)]) -> Result<(), SignatureError> {
        items
            .iter()
            .try_for_each(|(k, m, s)| k.verify_cofactored(m, s))
    }

    fn signed(keys: &[SigningKey], n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let key = &keys[(i * i) % keys.len()];
                let message = format!("event {i}").into_bytes();
                (key.public_key(), message.clone(), key.sign(&message))
            })
            .collect()
    }

    /// A signature made with the secret scalar of `key` and the nonce point `r·B + extra`.
    fn sign_with_nonce_point(key: &SigningKey, message: &[u8], extra: EdwardsPoint) -> Signature {
        let r = Scalar::from(0x5eed_u64 + message.len() as u64);
        let big_r = (ED25519_BASEPOINT_POINT * r + extra).compress();
        let h = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(key.public_key().as_bytes())
                .chain_update(message)
                .finalize()
                .into(),
        );
        let s = r + h * key.secret_scalar();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(bytes)
    }

    #[test]
    fn a_batch_verifies_only_when_every_signature_does() {
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate()).collect();
        let good = signed(&keys, 300);
        assert_eq!(batch(&good), Ok(()));
        assert_eq!(one_by_one(&good), Ok(()));
        assert_eq!(batch(&[]), Ok(()));

        let mut flipped = good.clone();
        flipped[17].2.flip_bit_for_test(200);
        assert_eq!(batch(&flipped), Err(SignatureError));
        // The right signature under another key of the batch.
        let mut moved = good.clone();
        assert_ne!(good[7].0, good[6].0);
        moved[7].0 = moved[6].0;
        assert_eq!(batch(&moved), Err(SignatureError));
        // Two signatures of one key swapped between their messages (0·0 ≡ 5·5 mod 5).
        let mut swapped = good.clone();
        let (first, sixth) = (swapped[0].2, swapped[5].2);
        swapped[0].2 = sixth;
        swapped[5].2 = first;
        assert_eq!(batch(&swapped), Err(SignatureError));
        assert_eq!(one_by_one(&swapped), Err(SignatureError));
    }

    /// The identity `R` with `s = h·a` satisfies the equation for the key's own holder;
    /// `verify_strict` refuses small-order `R`, and so do both audit checks.
    #[test]
    fn a_small_order_or_non_canonical_r_is_refused() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let mut identity_r = [0u8; 32];
        identity_r[0] = 1;
        let h = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(identity_r)
                .chain_update(public.as_bytes())
                .chain_update(b"event")
                .finalize()
                .into(),
        );
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&identity_r);
        bytes[32..].copy_from_slice((h * key.secret_scalar()).as_bytes());
        let small_r = Signature::from_bytes(bytes);
        assert_eq!(public.verify(b"event", &small_r), Err(SignatureError));
        assert_eq!(
            public.verify_cofactored(b"event", &small_r),
            Err(SignatureError)
        );
        let good = key.sign(b"another event");
        let items = [
            (public, b"another event".to_vec(), good),
            (public, b"event".to_vec(), small_r),
        ];
        assert_eq!(batch(&items), Err(SignatureError));
        assert_eq!(batch(&items[..1]), Ok(()));

        let mut y = [0xffu8; 32];
        y[31] = 0x7f;
        y[0] = 0xed; // p itself
        assert!(!is_canonical_y(&y));
        y[0] = 0xec; // p − 1
        assert!(is_canonical_y(&y));
        y[31] = 0xff; // 2²⁵⁵ − 1 with the sign bit set
        y[0] = 0xff;
        assert!(!is_canonical_y(&y));
        assert!(is_canonical_y(&[0u8; 32]));
    }

    /// A nonce point with a torsion component: only the key's holder can make one.
    /// `verify_strict` refuses it; the audit's cofactored rule accepts it, and says the
    /// same of it in any batch, so the verdict never depends on how events are batched
    /// (the cofactorless batch accepted such a pair about half the time).
    #[test]
    fn a_torsion_component_gets_the_same_verdict_alone_and_in_every_batch() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let good: Vec<_> = signed(std::slice::from_ref(&key), 20);
        for (order, torsion) in [(2, EIGHT_TORSION[4]), (8, EIGHT_TORSION[1])] {
            for i in 0..20u8 {
                let message = vec![i; 10 + order];
                let torsioned = sign_with_nonce_point(&key, &message, torsion);
                assert_eq!(public.verify(&message, &torsioned), Err(SignatureError));
                assert_eq!(public.verify_cofactored(&message, &torsioned), Ok(()));
                let mut items = vec![(public, message, torsioned)];
                items.extend(good[..(i as usize % 5) + 1].iter().cloned());
                assert_eq!(batch(&items), Ok(()), "order {order}, batch {i}");
            }
        }
        // A wrong s beside a torsioned R is still refused, alone and in a batch.
        let message = b"tampered".to_vec();
        let mut bad = sign_with_nonce_point(&key, &message, EIGHT_TORSION[1]);
        bad.flip_bit_for_test(260);
        assert_eq!(
            public.verify_cofactored(&message, &bad),
            Err(SignatureError)
        );
        let mut items = good.clone();
        items.push((public, message, bad));
        assert_eq!(batch(&items), Err(SignatureError));
    }
}
