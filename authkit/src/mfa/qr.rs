//! QR codes of `otpauth://` URIs, as SVG markup or as a PNG `data:` URI.
//!
//! Both use error correction level M (15 % of the modules may be damaged: enough for a
//! photographed screen, while keeping a ~100-byte URI at version 5–6), black on white, with
//! the 4-module quiet zone the QR specification asks for. The image encodes the secret:
//! send it once, never log or cache it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

use super::MfaError;

/// Modules of white border on each side.
const QUIET_ZONE: usize = 4;
/// Pixels per module in the PNG.
const PNG_MODULE_PX: usize = 6;
/// Minimum width and height of the SVG, in pixels.
const SVG_MIN_PX: u32 = 200;

fn encode(data: &str) -> Result<QrCode, MfaError> {
    QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|_| MfaError::Qr)
}

/// SVG markup of `data` as a QR code: at least 200 × 200 px, square modules.
pub fn qr_svg(data: &str) -> Result<String, MfaError> {
    let code = encode(data)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .quiet_zone(true)
        .min_dimensions(SVG_MIN_PX, SVG_MIN_PX)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// `data` as a QR code in a `data:image/png;base64,…` URI: an 8-bit greyscale PNG with
/// 6 px per module and a 4-module white border (a version-6 code is 61 modules, 366 px).
pub fn qr_png_data_uri(data: &str) -> Result<String, MfaError> {
    let code = encode(data)?;
    let modules = code.width();
    let side_modules = modules + 2 * QUIET_ZONE;
    let side = side_modules * PNG_MODULE_PX;
    let side_u32 = u32::try_from(side).map_err(|_| MfaError::Qr)?;

    // One pixel row per module row, repeated PNG_MODULE_PX times.
    let colors = code.to_colors();
    let mut pixels = Vec::with_capacity(side * side);
    let white_rows = vec![255u8; side * QUIET_ZONE * PNG_MODULE_PX];
    pixels.extend_from_slice(&white_rows);
    let mut row = Vec::with_capacity(side);
    for module_row in colors.chunks(modules.max(1)) {
        row.clear();
        row.resize(QUIET_ZONE * PNG_MODULE_PX, 255);
        for color in module_row {
            let value = if *color == Color::Dark { 0 } else { 255 };
            row.extend(std::iter::repeat_n(value, PNG_MODULE_PX));
        }
        row.resize(side, 255);
        for _ in 0..PNG_MODULE_PX {
            pixels.extend_from_slice(&row);
        }
    }
    pixels.extend_from_slice(&white_rows);
    if pixels.len() != side * side {
        return Err(MfaError::Qr);
    }

    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, side_u32, side_u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|_| MfaError::Qr)?;
        writer.write_image_data(&pixels).map_err(|_| MfaError::Qr)?;
        writer.finish().map_err(|_| MfaError::Qr)?;
    }
    let mut uri = String::with_capacity(22 + png_bytes.len().div_ceil(3) * 4);
    uri.push_str("data:image/png;base64,");
    STANDARD.encode_string(&png_bytes, &mut uri);
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/authkit:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=authkit&algorithm=SHA1&digits=6&period=30";

    #[test]
    fn svg_is_black_on_white_and_large_enough() {
        let svg = qr_svg(URI).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..40]);
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(r##"fill="#000000""##) && svg.contains(r##"fill="#ffffff""##));
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(width >= SVG_MIN_PX, "{width}");
    }

    #[test]
    fn png_has_the_expected_geometry() {
        let uri = qr_png_data_uri(URI).unwrap();
        let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
        let bytes = STANDARD.decode(b64).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        assert_eq!(info.width, info.height);
        let code = encode(URI).unwrap();
        let side = (code.width() + 2 * QUIET_ZONE) * PNG_MODULE_PX;
        assert_eq!(info.width as usize, side);
        // White border, black top-left finder pattern corner.
        assert_eq!(buf[0], 255);
        let corner = QUIET_ZONE * PNG_MODULE_PX;
        assert_eq!(buf[corner * side + corner], 0);
        assert!(buf.iter().all(|&p| p == 0 || p == 255));
    }

    #[test]
    fn too_much_data_is_an_error() {
        let huge = "a".repeat(5000);
        assert!(matches!(qr_svg(&huge), Err(MfaError::Qr)));
        assert!(matches!(qr_png_data_uri(&huge), Err(MfaError::Qr)));
    }
}
