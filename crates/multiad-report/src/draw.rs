//! Drawing one Plotters figure into PNG bytes and SVG text.
//!
//! PNG text needs a TrueType font: the first of `$MULTIAD_FONT` and the usual
//! DejaVu/Liberation paths is used; without one, PNGs are drawn without text
//! (SVG text never needs a font file).

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for PNG text once; false when none could be found.
pub fn png_text_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::env::var_os("MULTIAD_FONT").map(PathBuf::from).into_iter().collect();
        candidates.extend(FONT_PATHS.iter().map(PathBuf::from));
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        eprintln!("warning: no TrueType font found (set MULTIAD_FONT); PNG pictures are drawn without text");
        false
    })
}

/// A Plotters error as an anyhow one.
pub fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// What [`framed_chart`] returns: a chart over the axes `x` and `y` describe.
pub type FramedChart<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>>;

/// The house frame of a chart on `root`: white, with a caption and labelled
/// axes when the figure carries text, thin bare margins when it does not (a
/// PNG without a font), its mesh drawn over the ranges `x` and `y`.
pub fn framed_chart<'a, DB, X, Y>(
    root: &'a DrawingArea<DB, Shift>,
    text: bool,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    x: X,
    y: Y,
) -> Result<FramedChart<'a, DB, X, Y>>
where
    DB: DrawingBackend,
    X: AsRangedCoord,
    Y: AsRangedCoord,
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    root.fill(&WHITE).map_err(err)?;
    let mut b = ChartBuilder::on(root);
    b.margin(12).x_label_area_size(if text { 40 } else { 5 }).y_label_area_size(if text { 60 } else { 5 });
    if text {
        b.caption(title, ("sans-serif", 18));
    }
    let mut chart = b.build_cartesian_2d(x, y).map_err(err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(x_desc).y_desc(y_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    Ok(chart)
}

/// The series' legend in a white box at `position`, when the figure carries text.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>, text: bool, position: SeriesLabelPosition) -> Result<()> {
    if text {
        chart.configure_series_labels().position(position).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    }
    Ok(())
}

/// PNG bytes of an RGB buffer.
pub fn png_bytes(rgb: Vec<u8>, (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(w, h, rgb).context("an RGB buffer of the wrong size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).context("encoding a PNG")?;
    Ok(out.into_inner())
}

/// A drawing for the PNG backend; `bool`: text can be drawn.
pub type PngDraw<'a> = &'a dyn Fn(&DrawingArea<BitMapBackend, Shift>, bool) -> Result<()>;
/// The same drawing for the SVG backend.
pub type SvgDraw<'a> = &'a dyn Fn(&DrawingArea<SVGBackend, Shift>, bool) -> Result<()>;

/// A figure drawn both ways: `(PNG bytes, SVG text)`.
pub struct Figure {
    pub png: Vec<u8>,
    pub svg: String,
}

/// Draws `f` into a white PNG (text only when a font was found) and `g`
/// (the same drawing, for the SVG backend) into an SVG of the same size.
pub fn render_both(size: (u32, u32), f: PngDraw, g: SvgDraw) -> Result<Figure> {
    let mut rgb = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        f(&root, png_text_available())?;
        root.present().map_err(err)?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        g(&root, true)?;
        root.present().map_err(err)?;
    }
    Ok(Figure { png: png_bytes(rgb, size)?, svg })
}
