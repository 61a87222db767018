//! The reference the hand-written decoders are compared with: serde and postcard, with the checks `decode` makes.
//! Shared by `tests/frames.rs` and the `message` fuzz target (with the `serde` feature).

use protocol::DecodeError;

/// Decodes through serde and postcard, with the checks `Request::decode`/`Event::decode` make: nothing trailing,
/// the variant index known (`variants` of them), the limits.
pub fn postcard_decode<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    variants: u32,
    limits: impl Fn(&T) -> Result<(), DecodeError>,
) -> Result<T, DecodeError> {
    let msg = match postcard::take_from_bytes::<T>(bytes) {
        Ok((msg, [])) => msg,
        Ok(_) => return Err(DecodeError::Malformed),
        Err(_) => {
            return match postcard::take_from_bytes::<u32>(bytes) {
                Ok((tag, _)) if tag >= variants => Err(DecodeError::UnknownMessage(tag)),
                _ => Err(DecodeError::Malformed),
            }
        }
    };
    limits(&msg)?;
    Ok(msg)
}
