//! The dependency descriptor RTP header extension (AV1 RTP specification, Appendix A;
//! `https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension`).
//!
//! Chrome sends it for AV1, and for VP8/VP9 when simulcast or SVC is in use (URI
//! `https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension`).
//! It lets an SFU select layers without understanding the codec:
//!
//! * every packet carries the **mandatory fields** — start/end of frame, a 6-bit frame
//!   dependency template id, a 16-bit frame number;
//! * a keyframe's first packet also carries the **template dependency structure**: the
//!   templates (each with a spatial and temporal id, one decode target indication per decode
//!   target, frame diffs and chain diffs), the decode targets' protecting chains, and
//!   optionally the resolution of each spatial layer;
//! * a packet may override its template's DTIs, frame diffs and chain diffs ("custom"
//!   fields) and may carry the bitmask of active decode targets.
//!
//! Later packets are only interpretable against the last structure received on their
//! stream: keep one [`DependencyDescriptorReader`] per RTP stream (per simulcast SSRC), or
//! store the [`DependencyStructure`] yourself and call [`parse`]. A packet that carries a
//! structure starts a keyframe ([`DependencyDescriptor::structure_attached`]).
//!
//! A decode target indication (DTI, [`Dti`]) says, per decode target, whether the frame is
//! not part of it, discardable, a **switch** point (a decoder of that target may start
//! here, given the frames of the chain protecting it), or required.
//!
//! Everything is bounded (no allocation, fixed arrays): at most [`MAX_TEMPLATES`]
//! templates, [`MAX_DECODE_TARGETS`] decode targets, [`MAX_CHAINS`] chains,
//! [`MAX_SPATIAL_IDS`] spatial and [`MAX_TEMPORAL_IDS`] temporal layers (libwebrtc's limits,
//! and AV1's), and [`MAX_FRAME_DIFFS`] frame diffs per template or frame (a limit of ours:
//! real structures use at most 3). [`write()`] serialises a descriptor, in the minimal form.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use thiserror::Error;

/// Templates in a structure (the template id is 6 bits).
pub const MAX_TEMPLATES: usize = 64;
/// Decode targets in a structure (`dt_cnt_minus_one` is 5 bits).
pub const MAX_DECODE_TARGETS: usize = 32;
/// Chains in a structure (at most one per decode target).
pub const MAX_CHAINS: usize = 32;
/// Spatial layers (AV1's `spatial_id` is 2 bits).
pub const MAX_SPATIAL_IDS: usize = 4;
/// Temporal layers (AV1's `temporal_id` is 3 bits).
pub const MAX_TEMPORAL_IDS: usize = 8;
/// Frame diffs kept per template or frame.
pub const MAX_FRAME_DIFFS: usize = 16;

/// Why a dependency descriptor could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DdError {
    /// The extension ends before its fields do (or is shorter than 3 bytes).
    #[error("dependency descriptor truncated")]
    Truncated,
    /// The packet carries no structure and none is known for the stream.
    #[error("dependency descriptor without a known template structure")]
    MissingStructure,
    /// The template id is not one of the structure's (the structure changed unnoticed).
    #[error("dependency descriptor template id not in the structure")]
    UnknownTemplate,
    /// More than [`MAX_TEMPLATES`] templates.
    #[error("too many templates in dependency structure")]
    TooManyTemplates,
    /// A spatial id of [`MAX_SPATIAL_IDS`] or more, or a temporal id of [`MAX_TEMPORAL_IDS`]
    /// or more.
    #[error("too many layers in dependency structure")]
    TooManyLayers,
    /// More than [`MAX_FRAME_DIFFS`] frame diffs for one template or frame.
    #[error("too many frame diffs in dependency descriptor")]
    TooManyFrameDiffs,
    /// [`write()`]: the output buffer is too small.
    #[error("buffer too small for dependency descriptor")]
    BufferTooSmall,
    /// [`write()`] or a constructor: the values cannot be encoded (inconsistent counts, out of
    /// range values, templates not in layer order).
    #[error("dependency descriptor values cannot be encoded")]
    Unrepresentable,
}

/// A decode target indication: what a frame is to one decode target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dti {
    /// Not part of the decode target (`-`).
    NotPresent = 0,
    /// Part of it, but no later frame of the target depends on it (`D`).
    Discardable = 1,
    /// A switch point: decoding of the target can start here (`S`).
    Switch = 2,
    /// Part of it, and needed (`R`).
    Required = 3,
}

impl Dti {
    fn from_bits(bits: u64) -> Dti {
        match bits & 3 {
            0 => Dti::NotPresent,
            1 => Dti::Discardable,
            2 => Dti::Switch,
            _ => Dti::Required,
        }
    }
}

/// One DTI per decode target, packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dtis {
    bits: u64,
    len: u8,
}

impl Dtis {
    /// DTIs from a list (at most [`MAX_DECODE_TARGETS`]).
    pub fn from_slice(dtis: &[Dti]) -> Result<Self, DdError> {
        if dtis.len() > MAX_DECODE_TARGETS {
            return Err(DdError::Unrepresentable);
        }
        let mut d = Dtis::default();
        for &dti in dtis {
            d.push(dti);
        }
        Ok(d)
    }

    fn push(&mut self, dti: Dti) {
        if usize::from(self.len) < MAX_DECODE_TARGETS {
            self.bits |= (dti as u64) << (2 * u32::from(self.len));
            self.len += 1;
        }
    }

    /// The DTI for decode target `dt`.
    pub fn get(&self, dt: usize) -> Option<Dti> {
        (dt < usize::from(self.len)).then(|| Dti::from_bits(self.bits >> (2 * dt)))
    }

    /// Number of decode targets.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The DTIs in decode target order.
    pub fn iter(&self) -> impl Iterator<Item = Dti> + '_ {
        (0..self.len()).filter_map(|dt| self.get(dt))
    }
}

/// Frame diffs: how many frames back each referenced frame is (frame numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameDiffs {
    diffs: [u16; MAX_FRAME_DIFFS],
    len: u8,
}

impl FrameDiffs {
    /// Frame diffs from a list (at most [`MAX_FRAME_DIFFS`], each 1..=4096).
    pub fn from_slice(diffs: &[u16]) -> Result<Self, DdError> {
        let mut d = FrameDiffs::default();
        for &diff in diffs {
            if !(1..=4096).contains(&diff) {
                return Err(DdError::Unrepresentable);
            }
            d.push(diff)?;
        }
        Ok(d)
    }

    fn push(&mut self, diff: u16) -> Result<(), DdError> {
        let slot = self
            .diffs
            .get_mut(usize::from(self.len))
            .ok_or(DdError::TooManyFrameDiffs)?;
        *slot = diff;
        self.len += 1;
        Ok(())
    }

    /// The diffs.
    pub fn as_slice(&self) -> &[u16] {
        self.diffs.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// Chain diffs: per chain, how many frames back the previous frame of that chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainDiffs {
    diffs: [u8; MAX_CHAINS],
    len: u8,
}

impl ChainDiffs {
    /// Chain diffs from a list (at most [`MAX_CHAINS`]).
    pub fn from_slice(diffs: &[u8]) -> Result<Self, DdError> {
        let mut d = ChainDiffs::default();
        let target = d
            .diffs
            .get_mut(..diffs.len())
            .ok_or(DdError::Unrepresentable)?;
        target.copy_from_slice(diffs);
        d.len = diffs.len() as u8;
        Ok(d)
    }

    fn push(&mut self, diff: u8) {
        if let Some(slot) = self.diffs.get_mut(usize::from(self.len)) {
            *slot = diff;
            self.len += 1;
        }
    }

    /// The diffs, one per chain.
    pub fn as_slice(&self) -> &[u8] {
        self.diffs.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// One frame dependency template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTemplate {
    /// Spatial layer of frames using this template.
    pub spatial_id: u8,
    /// Temporal layer of frames using this template.
    pub temporal_id: u8,
    /// One DTI per decode target.
    pub dtis: Dtis,
    /// Frame diffs (each 1..=16 in a template).
    pub frame_diffs: FrameDiffs,
    /// One chain diff (0..=15) per chain.
    pub chain_diffs: ChainDiffs,
}

impl FrameTemplate {
    const EMPTY: FrameTemplate = FrameTemplate {
        spatial_id: 0,
        temporal_id: 0,
        dtis: Dtis { bits: 0, len: 0 },
        frame_diffs: FrameDiffs {
            diffs: [0; MAX_FRAME_DIFFS],
            len: 0,
        },
        chain_diffs: ChainDiffs {
            diffs: [0; MAX_CHAINS],
            len: 0,
        },
    };
}

/// A render resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resolution {
    /// Width in pixels (1..=65536).
    pub width: u32,
    /// Height in pixels (1..=65536).
    pub height: u32,
}

/// The template dependency structure of a stream, as attached to its keyframes. Store one
/// per RTP stream (about 6 KB: fixed arrays, no allocation; box it if that matters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyStructure {
    template_id_offset: u8,
    decode_target_count: u8,
    chain_count: u8,
    template_count: u8,
    templates: [FrameTemplate; MAX_TEMPLATES],
    protected_by: [u8; MAX_DECODE_TARGETS],
    /// Per decode target: highest (spatial id, temporal id) of its frames.
    decode_target_layers: [(u8, u8); MAX_DECODE_TARGETS],
    resolutions: [Resolution; MAX_SPATIAL_IDS],
    resolution_count: u8,
}

impl DependencyStructure {
    const EMPTY: DependencyStructure = DependencyStructure {
        template_id_offset: 0,
        decode_target_count: 0,
        chain_count: 0,
        template_count: 0,
        templates: [FrameTemplate::EMPTY; MAX_TEMPLATES],
        protected_by: [0; MAX_DECODE_TARGETS],
        decode_target_layers: [(0, 0); MAX_DECODE_TARGETS],
        resolutions: [Resolution {
            width: 0,
            height: 0,
        }; MAX_SPATIAL_IDS],
        resolution_count: 0,
    };

    /// Builds a structure (to write with [`write()`], or for tests). `templates` must be in
    /// the order the format requires — spatial ids ascending, temporal ids ascending by one
    /// within a spatial layer, starting at (0, 0) — with `decode_target_count` DTIs and
    /// `protected_by.len()` chain diffs (0..=15) each; `protected_by` gives each decode
    /// target's chain (empty: no chains); `resolutions` is empty or one per spatial layer.
    pub fn new(
        template_id_offset: u8,
        decode_target_count: usize,
        chain_count: usize,
        protected_by: &[u8],
        templates: &[FrameTemplate],
        resolutions: &[Resolution],
    ) -> Result<Self, DdError> {
        let mut s = DependencyStructure::EMPTY;
        let bad = DdError::Unrepresentable;
        if template_id_offset >= 64
            || !(1..=MAX_DECODE_TARGETS).contains(&decode_target_count)
            || chain_count > decode_target_count
            || templates.is_empty()
            || templates.len() > MAX_TEMPLATES
            || protected_by.len()
                != if chain_count == 0 {
                    0
                } else {
                    decode_target_count
                }
            || protected_by.iter().any(|&c| usize::from(c) >= chain_count)
        {
            return Err(bad);
        }
        s.template_id_offset = template_id_offset;
        s.decode_target_count = decode_target_count as u8;
        s.chain_count = chain_count as u8;
        s.template_count = templates.len() as u8;
        let mut previous: Option<&FrameTemplate> = None;
        for (slot, t) in s.templates.iter_mut().zip(templates) {
            let in_order = match previous {
                None => t.spatial_id == 0 && t.temporal_id == 0,
                Some(p) => next_layer_idc(p, t).is_some(),
            };
            if !in_order
                || usize::from(t.spatial_id) >= MAX_SPATIAL_IDS
                || usize::from(t.temporal_id) >= MAX_TEMPORAL_IDS
                || t.dtis.len() != decode_target_count
                || t.chain_diffs.len as usize != chain_count
                || t.chain_diffs.as_slice().iter().any(|&d| d > 15)
                || t.frame_diffs
                    .as_slice()
                    .iter()
                    .any(|&d| !(1..=16).contains(&d))
            {
                return Err(bad);
            }
            *slot = *t;
            previous = Some(t);
        }
        s.protected_by
            .get_mut(..protected_by.len())
            .ok_or(bad)?
            .copy_from_slice(protected_by);
        if !resolutions.is_empty() {
            if resolutions.len() != s.spatial_layer_count()
                || resolutions
                    .iter()
                    .any(|r| !(1..=65536).contains(&r.width) || !(1..=65536).contains(&r.height))
            {
                return Err(bad);
            }
            s.resolutions
                .get_mut(..resolutions.len())
                .ok_or(bad)?
                .copy_from_slice(resolutions);
            s.resolution_count = resolutions.len() as u8;
        }
        s.compute_decode_target_layers();
        Ok(s)
    }

    /// The structure attached to a dependency descriptor extension, if it carries one.
    pub fn from_extension(ext: &[u8]) -> Result<Option<DependencyStructure>, DdError> {
        let mut attached = None;
        match parse_with(ext, None, &mut attached) {
            // Without a structure the frame part is unreadable: there is nothing to return.
            Ok(_) | Err(DdError::MissingStructure) => Ok(attached),
            Err(e) => Err(e),
        }
    }

    /// The id of the first template; template `i` has id `(offset + i) % 64`.
    pub fn template_id_offset(&self) -> u8 {
        self.template_id_offset
    }

    /// Number of decode targets.
    pub fn decode_target_count(&self) -> usize {
        usize::from(self.decode_target_count)
    }

    /// Number of chains.
    pub fn chain_count(&self) -> usize {
        usize::from(self.chain_count)
    }

    /// The templates, in order.
    pub fn templates(&self) -> &[FrameTemplate] {
        self.templates
            .get(..usize::from(self.template_count))
            .unwrap_or(&[])
    }

    /// The template with this (6-bit) template id.
    pub fn template(&self, template_id: u8) -> Option<&FrameTemplate> {
        let index = (usize::from(template_id & 0x3f) + MAX_TEMPLATES
            - usize::from(self.template_id_offset))
            % MAX_TEMPLATES;
        self.templates().get(index)
    }

    /// The chain protecting decode target `dt` (when there are chains).
    pub fn decode_target_protected_by(&self, dt: usize) -> Option<u8> {
        if self.chain_count == 0 || dt >= self.decode_target_count() {
            return None;
        }
        self.protected_by.get(dt).copied()
    }

    /// The highest (spatial id, temporal id) among the frames of decode target `dt`.
    pub fn decode_target_layers(&self, dt: usize) -> Option<(u8, u8)> {
        if dt >= self.decode_target_count() {
            return None;
        }
        self.decode_target_layers.get(dt).copied()
    }

    /// The decode target whose highest layers are exactly `spatial_id` and `temporal_id`:
    /// what a selector forwarding those layers should follow.
    pub fn decode_target_for(&self, spatial_id: u8, temporal_id: u8) -> Option<usize> {
        (0..self.decode_target_count())
            .find(|&dt| self.decode_target_layers(dt) == Some((spatial_id, temporal_id)))
    }

    /// Number of spatial layers (highest template spatial id plus one).
    pub fn spatial_layer_count(&self) -> usize {
        self.templates()
            .last()
            .map_or(0, |t| usize::from(t.spatial_id) + 1)
    }

    /// Render resolution of `spatial_id`, when the structure carries resolutions.
    pub fn resolution(&self, spatial_id: u8) -> Option<Resolution> {
        if spatial_id >= self.resolution_count {
            return None;
        }
        self.resolutions.get(usize::from(spatial_id)).copied()
    }

    fn compute_decode_target_layers(&mut self) {
        let count = self.decode_target_count();
        for (dt, layers) in self.decode_target_layers.iter_mut().enumerate().take(count) {
            *layers = (0, 0);
            for t in self.templates.iter().take(usize::from(self.template_count)) {
                if t.dtis.get(dt).is_some_and(|d| d != Dti::NotPresent) {
                    layers.0 = layers.0.max(t.spatial_id);
                    layers.1 = layers.1.max(t.temporal_id);
                }
            }
        }
    }
}

/// The `next_layer_idc` leading from template `a` to template `b`, if one does.
fn next_layer_idc(a: &FrameTemplate, b: &FrameTemplate) -> Option<u32> {
    if b.spatial_id == a.spatial_id && b.temporal_id == a.temporal_id {
        Some(0)
    } else if b.spatial_id == a.spatial_id && b.temporal_id == a.temporal_id + 1 {
        Some(1)
    } else if b.spatial_id == a.spatial_id + 1 && b.temporal_id == 0 {
        Some(2)
    } else {
        None
    }
}

/// One packet's dependency descriptor, interpreted against its structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependencyDescriptor {
    /// First packet of the frame.
    pub start_of_frame: bool,
    /// Last packet of the frame.
    pub end_of_frame: bool,
    /// The frame dependency template id (6 bits).
    pub template_id: u8,
    /// The frame number (16 bits, wrapping).
    pub frame_number: u16,
    /// The frame's spatial layer.
    pub spatial_id: u8,
    /// The frame's temporal layer.
    pub temporal_id: u8,
    /// One DTI per decode target (the template's, or the packet's custom ones).
    pub dtis: Dtis,
    /// Frame diffs of the frame's references.
    pub frame_diffs: FrameDiffs,
    /// Chain diffs, one per chain.
    pub chain_diffs: ChainDiffs,
    /// The active decode targets bitmask (bit `dt`), when the packet carries one or carries
    /// a structure (then all targets are active). [`DependencyDescriptorReader::read`]
    /// always fills in the stream's current mask.
    pub active_decode_targets: Option<u32>,
    /// The packet carries a template structure: it starts a keyframe (libwebrtc attaches the
    /// structure to the first packet of every keyframe).
    pub structure_attached: bool,
    /// Render resolution of the frame's spatial layer, if the structure has resolutions.
    pub resolution: Option<Resolution>,
    /// The frame is a switch point (DTI [`Dti::Switch`]) for a decode target whose highest
    /// layers are exactly this frame's spatial and temporal ids.
    pub layer_switch_point: bool,
}

impl DependencyDescriptor {
    /// The frame's DTI for decode target `dt` ([`Dti::NotPresent`] past the last target).
    pub fn dti(&self, dt: usize) -> Dti {
        self.dtis.get(dt).unwrap_or(Dti::NotPresent)
    }

    /// Whether a decoder of decode target `dt` can start at this frame.
    pub fn is_switch_point(&self, dt: usize) -> bool {
        self.dti(dt) == Dti::Switch
    }

    /// Whether the frame belongs to decode target `dt`.
    pub fn is_part_of(&self, dt: usize) -> bool {
        self.dti(dt) != Dti::NotPresent
    }

    /// Whether the packet starts a keyframe (it carries a structure).
    pub fn is_keyframe(&self) -> bool {
        self.structure_attached
    }
}

/// Reads bits most significant first, failing past the end.
struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u32) -> Result<u32, DdError> {
        let mut value = 0u64;
        for _ in 0..bits.min(32) {
            let byte = *self
                .bytes
                .get(self.position / 8)
                .ok_or(DdError::Truncated)?;
            let bit = (byte >> (7 - self.position % 8)) & 1;
            value = (value << 1) | u64::from(bit);
            self.position += 1;
        }
        Ok(value as u32)
    }

    fn flag(&mut self) -> Result<bool, DdError> {
        Ok(self.read(1)? == 1)
    }

    /// `ns(n)`: a value in 0..n, non-symmetric unsigned encoding (n >= 1).
    fn non_symmetric(&mut self, n: u32) -> Result<u32, DdError> {
        let w = 32 - n.leading_zeros();
        let m = (1u32 << w).wrapping_sub(n);
        let v = self.read(w.saturating_sub(1))?;
        if v < m {
            return Ok(v);
        }
        let extra = self.read(1)?;
        Ok((v << 1).wrapping_sub(m) + extra)
    }
}

fn parse_structure(r: &mut BitReader<'_>, s: &mut DependencyStructure) -> Result<(), DdError> {
    *s = DependencyStructure::EMPTY;
    s.template_id_offset = r.read(6)? as u8;
    s.decode_target_count = r.read(5)? as u8 + 1;
    let dt_count = s.decode_target_count();

    // Template layers.
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        let slot = s
            .templates
            .get_mut(usize::from(s.template_count))
            .ok_or(DdError::TooManyTemplates)?;
        slot.spatial_id = spatial;
        slot.temporal_id = temporal;
        s.template_count += 1;
        match r.read(2)? {
            0 => {}
            1 => temporal += 1,
            2 => {
                spatial += 1;
                temporal = 0;
            }
            _ => break,
        }
        if usize::from(temporal) >= MAX_TEMPORAL_IDS || usize::from(spatial) >= MAX_SPATIAL_IDS {
            return Err(DdError::TooManyLayers);
        }
    }
    let template_count = usize::from(s.template_count);

    for t in s.templates.iter_mut().take(template_count) {
        for _ in 0..dt_count {
            t.dtis.push(Dti::from_bits(u64::from(r.read(2)?)));
        }
    }
    for t in s.templates.iter_mut().take(template_count) {
        while r.flag()? {
            t.frame_diffs.push(r.read(4)? as u16 + 1)?;
        }
    }
    s.chain_count = r.non_symmetric(dt_count as u32 + 1)? as u8;
    if s.chain_count > 0 {
        let chains = u32::from(s.chain_count);
        for p in s.protected_by.iter_mut().take(dt_count) {
            *p = r.non_symmetric(chains)? as u8;
        }
        for t in s.templates.iter_mut().take(template_count) {
            for _ in 0..chains {
                t.chain_diffs.push(r.read(4)? as u8);
            }
        }
    }
    s.compute_decode_target_layers();
    if r.flag()? {
        let layers = s.spatial_layer_count();
        for res in s.resolutions.iter_mut().take(layers) {
            res.width = r.read(16)? + 1;
            res.height = r.read(16)? + 1;
        }
        s.resolution_count = layers as u8;
    }
    Ok(())
}

/// Parses `ext` (the extension's value) into a descriptor, interpreting it against the
/// structure it carries if any, else against `structure` (the last one stored for the
/// stream). The structure it carries, if any, is written to `attached`.
fn parse_with(
    ext: &[u8],
    structure: Option<&DependencyStructure>,
    attached: &mut Option<DependencyStructure>,
) -> Result<DependencyDescriptor, DdError> {
    if ext.len() < 3 {
        return Err(DdError::Truncated);
    }
    let mut r = BitReader {
        bytes: ext,
        position: 0,
    };
    let start_of_frame = r.flag()?;
    let end_of_frame = r.flag()?;
    let template_id = r.read(6)? as u8;
    let frame_number = r.read(16)? as u16;
    let (mut structure_present, mut active_present) = (false, false);
    let (mut custom_dtis, mut custom_fdiffs, mut custom_chains) = (false, false, false);
    if ext.len() > 3 {
        structure_present = r.flag()?;
        active_present = r.flag()?;
        custom_dtis = r.flag()?;
        custom_fdiffs = r.flag()?;
        custom_chains = r.flag()?;
    }
    if structure_present {
        parse_structure(&mut r, attached.insert(DependencyStructure::EMPTY))?;
    }
    let s = match attached.as_ref() {
        Some(s) if structure_present => s,
        _ => structure.ok_or(DdError::MissingStructure)?,
    };
    let dt_count = s.decode_target_count();
    let all_targets = (u64::MAX >> (64 - dt_count.clamp(1, 32))) as u32;
    let active_decode_targets = if active_present {
        Some(r.read(dt_count as u32)?)
    } else {
        structure_present.then_some(all_targets)
    };
    let template = s.template(template_id).ok_or(DdError::UnknownTemplate)?;

    let mut d = DependencyDescriptor {
        start_of_frame,
        end_of_frame,
        template_id,
        frame_number,
        spatial_id: template.spatial_id,
        temporal_id: template.temporal_id,
        dtis: template.dtis,
        frame_diffs: template.frame_diffs,
        chain_diffs: template.chain_diffs,
        active_decode_targets,
        structure_attached: structure_present,
        resolution: s.resolution(template.spatial_id),
        layer_switch_point: false,
    };
    if custom_dtis {
        d.dtis = Dtis::default();
        for _ in 0..dt_count {
            d.dtis.push(Dti::from_bits(u64::from(r.read(2)?)));
        }
    }
    if custom_fdiffs {
        d.frame_diffs = FrameDiffs::default();
        // Bounded: each iteration pushes, and push fails after MAX_FRAME_DIFFS.
        loop {
            let size = r.read(2)?;
            if size == 0 {
                break;
            }
            d.frame_diffs.push(r.read(4 * size)? as u16 + 1)?;
        }
    }
    if custom_chains {
        d.chain_diffs = ChainDiffs::default();
        for _ in 0..s.chain_count() {
            d.chain_diffs.push(r.read(8)? as u8);
        }
    }
    d.layer_switch_point = (0..dt_count).any(|dt| {
        d.dtis.get(dt) == Some(Dti::Switch)
            && s.decode_target_layers(dt) == Some((d.spatial_id, d.temporal_id))
    });
    Ok(d)
}

/// Parses a dependency descriptor extension value. A packet that carries a structure is
/// interpreted against it (and [`DependencyDescriptor::structure_attached`] is set: get the
/// structure with [`DependencyStructure::from_extension`], or use a
/// [`DependencyDescriptorReader`] which keeps it); any other packet against `structure`, the
/// stream's last one ([`DdError::MissingStructure`] if `None`).
pub fn parse(
    ext: &[u8],
    structure: Option<&DependencyStructure>,
) -> Result<DependencyDescriptor, DdError> {
    let mut attached = None;
    parse_with(ext, structure, &mut attached)
}

/// Per-stream state: the last structure received and the active decode targets.
#[derive(Debug, Clone, Default)]
pub struct DependencyDescriptorReader {
    structure: Option<DependencyStructure>,
    active_decode_targets: u32,
}

impl DependencyDescriptorReader {
    /// A reader that has seen no structure yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream's current structure.
    pub fn structure(&self) -> Option<&DependencyStructure> {
        self.structure.as_ref()
    }

    /// Reads one packet's extension value. A structure it carries replaces the stored one
    /// (only if the whole descriptor parses); the returned descriptor's
    /// `active_decode_targets` is always the stream's current mask.
    pub fn read(&mut self, ext: &[u8]) -> Result<DependencyDescriptor, DdError> {
        let mut attached = None;
        let mut d = parse_with(ext, self.structure.as_ref(), &mut attached)?;
        if let Some(s) = attached {
            self.structure = Some(s);
        }
        if let Some(mask) = d.active_decode_targets {
            self.active_decode_targets = mask;
        }
        d.active_decode_targets = Some(self.active_decode_targets);
        Ok(d)
    }
}

/// Writes bits most significant first into a buffer, failing when it is full.
struct BitWriter<'a> {
    bytes: &'a mut [u8],
    position: usize,
}

impl BitWriter<'_> {
    fn write(&mut self, value: u32, bits: u32) -> Result<(), DdError> {
        for i in (0..bits.min(32)).rev() {
            let byte = self
                .bytes
                .get_mut(self.position / 8)
                .ok_or(DdError::BufferTooSmall)?;
            let shift = 7 - self.position % 8;
            if shift == 7 {
                *byte = 0;
            }
            *byte |= (((value >> i) & 1) as u8) << shift;
            self.position += 1;
        }
        Ok(())
    }

    fn flag(&mut self, value: bool) -> Result<(), DdError> {
        self.write(u32::from(value), 1)
    }

    fn non_symmetric(&mut self, value: u32, n: u32) -> Result<(), DdError> {
        let w = 32 - n.leading_zeros();
        let m = (1u32 << w).wrapping_sub(n);
        if value < m {
            self.write(value, w.saturating_sub(1))
        } else {
            let x = value + m;
            self.write(x >> 1, w.saturating_sub(1))?;
            self.write(x & 1, 1)
        }
    }
}

fn write_structure(w: &mut BitWriter<'_>, s: &DependencyStructure) -> Result<(), DdError> {
    w.write(u32::from(s.template_id_offset), 6)?;
    w.write(u32::from(s.decode_target_count).saturating_sub(1), 5)?;
    let templates = s.templates();
    for (i, t) in templates.iter().enumerate() {
        let idc = match templates.get(i + 1) {
            Some(next) => next_layer_idc(t, next).ok_or(DdError::Unrepresentable)?,
            None => 3,
        };
        w.write(idc, 2)?;
    }
    for t in templates {
        for dti in t.dtis.iter() {
            w.write(dti as u32, 2)?;
        }
    }
    for t in templates {
        for &diff in t.frame_diffs.as_slice() {
            w.flag(true)?;
            w.write(u32::from(diff).saturating_sub(1), 4)?;
        }
        w.flag(false)?;
    }
    let dt_count = s.decode_target_count() as u32;
    w.non_symmetric(u32::from(s.chain_count), dt_count + 1)?;
    if s.chain_count > 0 {
        for dt in 0..s.decode_target_count() {
            let chain = s.protected_by.get(dt).copied().unwrap_or(0);
            w.non_symmetric(u32::from(chain), u32::from(s.chain_count))?;
        }
        for t in templates {
            for &diff in t.chain_diffs.as_slice() {
                w.write(u32::from(diff), 4)?;
            }
        }
    }
    w.flag(s.resolution_count > 0)?;
    for r in s.resolutions.iter().take(usize::from(s.resolution_count)) {
        w.write(r.width.saturating_sub(1), 16)?;
        w.write(r.height.saturating_sub(1), 16)?;
    }
    Ok(())
}

/// Writes `descriptor` as an extension value into `out`, interpreted against `structure`
/// and attaching it if `attach_structure`. The descriptor's DTIs, frame diffs and chain
/// diffs are written as custom fields only where they differ from its template's; its
/// `active_decode_targets` are written when `Some` (with an attached structure, only when
/// not all targets). Returns the length written (3 bytes for mandatory fields only).
pub fn write(
    out: &mut [u8],
    descriptor: &DependencyDescriptor,
    structure: &DependencyStructure,
    attach_structure: bool,
) -> Result<usize, DdError> {
    let d = descriptor;
    let s = structure;
    let template = s.template(d.template_id).ok_or(DdError::UnknownTemplate)?;
    let dt_count = s.decode_target_count();
    let chain_count = s.chain_count();
    if d.template_id >= 64
        || (d.spatial_id, d.temporal_id) != (template.spatial_id, template.temporal_id)
        || d.dtis.len() != dt_count
        || d.chain_diffs.len as usize != chain_count
        || d.frame_diffs
            .as_slice()
            .iter()
            .any(|&f| !(1..=4096).contains(&f))
    {
        return Err(DdError::Unrepresentable);
    }
    let all_targets = (u64::MAX >> (64 - dt_count.clamp(1, 32))) as u32;
    let active = match d.active_decode_targets {
        Some(mask) if mask > all_targets => return Err(DdError::Unrepresentable),
        Some(mask) if !attach_structure || mask != all_targets => Some(mask),
        _ => None,
    };
    let custom_dtis = d.dtis != template.dtis;
    let custom_fdiffs = d.frame_diffs != template.frame_diffs;
    let custom_chains = d.chain_diffs != template.chain_diffs;
    let extended =
        attach_structure || active.is_some() || custom_dtis || custom_fdiffs || custom_chains;

    let mut w = BitWriter {
        bytes: out,
        position: 0,
    };
    w.flag(d.start_of_frame)?;
    w.flag(d.end_of_frame)?;
    w.write(u32::from(d.template_id), 6)?;
    w.write(u32::from(d.frame_number), 16)?;
    if extended {
        for f in [
            attach_structure,
            active.is_some(),
            custom_dtis,
            custom_fdiffs,
            custom_chains,
        ] {
            w.flag(f)?;
        }
        if attach_structure {
            write_structure(&mut w, s)?;
        }
        if let Some(mask) = active {
            w.write(mask, dt_count as u32)?;
        }
        if custom_dtis {
            for dti in d.dtis.iter() {
                w.write(dti as u32, 2)?;
            }
        }
        if custom_fdiffs {
            for &diff in d.frame_diffs.as_slice() {
                let v = u32::from(diff).saturating_sub(1);
                let size = if v < 16 {
                    1
                } else if v < 256 {
                    2
                } else {
                    3
                };
                w.write(size, 2)?;
                w.write(v, 4 * size)?;
            }
            w.write(0, 2)?;
        }
        if custom_chains {
            for &diff in d.chain_diffs.as_slice() {
                w.write(u32::from(diff), 8)?;
            }
        }
    }
    // Zero padding to the byte boundary.
    while !w.position.is_multiple_of(8) {
        w.write(0, 1)?;
    }
    Ok(w.position / 8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use crate::codecs::test_util::{self, XorShift};

    /// An independent bit writer for hand-built test vectors.
    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        len: usize,
    }

    impl Bits {
        fn put(&mut self, value: u32, bits: u32) -> &mut Self {
            for i in (0..bits).rev() {
                if self.len.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = if i < 32 { ((value >> i) & 1) as u8 } else { 0 };
                *self.bytes.last_mut().unwrap() |= bit << (7 - self.len % 8);
                self.len += 1;
            }
            self
        }
    }

    const L1T3_OFFSET: u32 = 5;

    /// libwebrtc's L1T3: one spatial layer, three temporal layers, three decode targets
    /// (DT0 = T0, DT1 = T0+T1, DT2 = all), one chain protecting them all, 640x480.
    fn put_l1t3_structure(b: &mut Bits) {
        b.put(L1T3_OFFSET, 6).put(2, 5); // template_id_offset, dt_cnt_minus_one
        // Templates: T0 (key), T0, T1, T2, T2: next_layer_idc 0, 1, 1, 0, 3.
        for idc in [0, 1, 1, 0, 3] {
            b.put(idc, 2);
        }
        // DTIs: SSS, SSS, -DS, --D, --D.
        for dtis in [[2, 2, 2], [2, 2, 2], [0, 1, 2], [0, 0, 1], [0, 0, 1]] {
            for dti in dtis {
                b.put(dti, 2);
            }
        }
        // Frame diffs: none, [4], [2], [1], [1].
        b.put(0, 1);
        for fdiff in [4, 2, 1, 1] {
            b.put(1, 1).put(fdiff - 1, 4).put(0, 1);
        }
        // chain_cnt = ns(4) of 1: w = 3, m = 4, v = 1 in 2 bits.
        b.put(1, 2);
        // decode_target_protected_by: ns(1) takes no bits. Chain diffs, 4 bits each.
        for chain_diff in [0, 4, 2, 1, 3] {
            b.put(chain_diff, 4);
        }
        b.put(1, 1).put(639, 16).put(479, 16); // resolutions
    }

    /// A keyframe's first packet: mandatory fields, then the L1T3 structure.
    fn l1t3_keyframe(frame_number: u16) -> Vec<u8> {
        let mut b = Bits::default();
        b.put(1, 1)
            .put(0, 1)
            .put(L1T3_OFFSET, 6)
            .put(u32::from(frame_number), 16);
        b.put(0b10000, 5); // structure present, nothing else
        put_l1t3_structure(&mut b);
        b.bytes
    }

    pub(crate) fn l1t3_structure() -> DependencyStructure {
        DependencyStructure::from_extension(&l1t3_keyframe(1))
            .unwrap()
            .unwrap()
    }

    /// A 3-byte descriptor using template `index` of the L1T3 structure.
    pub(crate) fn l1t3_packet(index: u32, frame_number: u16, start: bool) -> Vec<u8> {
        let mut b = Bits::default();
        b.put(u32::from(start), 1)
            .put(1, 1)
            .put((L1T3_OFFSET + index) % 64, 6);
        b.put(u32::from(frame_number), 16);
        b.bytes
    }

    #[test]
    fn parses_an_l1t3_keyframe_structure() {
        let ext = l1t3_keyframe(100);
        let d = parse(&ext, None).unwrap();
        assert!(d.start_of_frame && !d.end_of_frame && d.structure_attached && d.is_keyframe());
        assert_eq!((d.template_id, d.frame_number), (5, 100));
        assert_eq!((d.spatial_id, d.temporal_id), (0, 0));
        assert_eq!(d.dtis.iter().collect::<Vec<_>>(), [Dti::Switch; 3]);
        assert!(d.frame_diffs.as_slice().is_empty());
        assert_eq!(d.chain_diffs.as_slice(), [0]);
        assert_eq!(d.active_decode_targets, Some(0b111));
        assert_eq!(
            d.resolution,
            Some(Resolution {
                width: 640,
                height: 480
            })
        );
        assert!(d.layer_switch_point);

        let s = DependencyStructure::from_extension(&ext).unwrap().unwrap();
        assert_eq!(s.template_id_offset(), 5);
        assert_eq!((s.decode_target_count(), s.chain_count()), (3, 1));
        let layers: Vec<_> = s
            .templates()
            .iter()
            .map(|t| (t.spatial_id, t.temporal_id))
            .collect();
        assert_eq!(layers, [(0, 0), (0, 0), (0, 1), (0, 2), (0, 2)]);
        let fdiffs: Vec<_> = s
            .templates()
            .iter()
            .map(|t| t.frame_diffs.as_slice().to_vec())
            .collect();
        assert_eq!(fdiffs, [vec![], vec![4], vec![2], vec![1], vec![1]]);
        let chains: Vec<_> = s
            .templates()
            .iter()
            .map(|t| t.chain_diffs.as_slice()[0])
            .collect();
        assert_eq!(chains, [0, 4, 2, 1, 3]);
        assert_eq!(
            (0..3)
                .map(|dt| s.decode_target_layers(dt).unwrap())
                .collect::<Vec<_>>(),
            [(0, 0), (0, 1), (0, 2)]
        );
        assert_eq!(
            (0..3)
                .map(|dt| s.decode_target_protected_by(dt))
                .collect::<Vec<_>>(),
            [Some(0); 3]
        );
        assert_eq!(s.decode_target_protected_by(3), None);
        assert_eq!(s.decode_target_for(0, 1), Some(1));
        assert_eq!(s.decode_target_for(1, 0), None);
        assert_eq!(s.spatial_layer_count(), 1);
        assert_eq!(
            s.resolution(0),
            Some(Resolution {
                width: 640,
                height: 480
            })
        );
        assert_eq!(s.resolution(1), None);
        assert_eq!(s.template(5).map(|t| t.temporal_id), Some(0));
        assert_eq!(s.template(7).map(|t| t.temporal_id), Some(1));
        assert!(s.template(10).is_none() && s.template(4).is_none());
    }

    #[test]
    fn later_packets_are_interpreted_against_the_stored_structure() {
        let s = l1t3_structure();
        // T1 frame: DTIs -DS, frame diff 2, chain diff 2.
        let d = parse(&l1t3_packet(2, 102, true), Some(&s)).unwrap();
        assert!(!d.structure_attached && d.start_of_frame && d.end_of_frame);
        assert_eq!((d.frame_number, d.spatial_id, d.temporal_id), (102, 0, 1));
        assert_eq!(
            d.dtis.iter().collect::<Vec<_>>(),
            [Dti::NotPresent, Dti::Discardable, Dti::Switch]
        );
        assert!(
            !d.is_part_of(0) && d.is_part_of(1) && d.is_switch_point(2) && !d.is_switch_point(1)
        );
        assert_eq!(d.dti(7), Dti::NotPresent);
        assert_eq!(d.frame_diffs.as_slice(), [2]);
        assert_eq!(d.chain_diffs.as_slice(), [2]);
        assert_eq!(d.active_decode_targets, None);
        assert_eq!(
            d.resolution,
            Some(Resolution {
                width: 640,
                height: 480
            })
        );
        assert!(!d.layer_switch_point); // DT1 (max T1) has D for this frame
        // T2 frame.
        let d = parse(&l1t3_packet(3, 103, false), Some(&s)).unwrap();
        assert_eq!((d.temporal_id, d.frame_diffs.as_slice()), (2, &[1][..]));
        assert!(!d.start_of_frame);
        // T0 delta frame: a switch point of DT0.
        let d = parse(&l1t3_packet(1, 104, true), Some(&s)).unwrap();
        assert!(d.layer_switch_point && d.temporal_id == 0);

        assert_eq!(
            parse(&l1t3_packet(2, 5, true), None),
            Err(DdError::MissingStructure)
        );
        assert_eq!(
            parse(&l1t3_packet(5, 5, true), Some(&s)),
            Err(DdError::UnknownTemplate)
        );
        assert_eq!(
            parse(&l1t3_packet(63, 5, true), Some(&s)),
            Err(DdError::UnknownTemplate)
        );
        assert_eq!(parse(&[0x80, 0x00], Some(&s)), Err(DdError::Truncated));
    }

    #[test]
    fn custom_fields_and_active_decode_targets() {
        let s = l1t3_structure();
        let mut b = Bits::default();
        b.put(1, 1).put(1, 1).put(L1T3_OFFSET + 3, 6).put(7, 16); // T2 template
        b.put(0b01111, 5); // active mask, custom dtis, fdiffs, chains
        b.put(0b011, 3); // DT0 and DT1 active
        for dti in [0, 0, 3] {
            b.put(dti, 2);
        }
        // fdiffs 1 (size 1), 20 (size 2), 4000 (size 3), end.
        b.put(1, 2)
            .put(0, 4)
            .put(2, 2)
            .put(19, 8)
            .put(3, 2)
            .put(3999, 12)
            .put(0, 2);
        b.put(200, 8); // chain diff
        let d = parse(&b.bytes, Some(&s)).unwrap();
        assert_eq!(d.temporal_id, 2);
        assert_eq!(d.active_decode_targets, Some(0b011));
        assert_eq!(
            d.dtis.iter().collect::<Vec<_>>(),
            [Dti::NotPresent, Dti::NotPresent, Dti::Required]
        );
        assert_eq!(d.frame_diffs.as_slice(), [1, 20, 4000]);
        assert_eq!(d.chain_diffs.as_slice(), [200]);

        // The reader keeps the mask for later packets and resets it with a new structure.
        let mut reader = DependencyDescriptorReader::new();
        assert_eq!(
            reader.read(&l1t3_packet(1, 1, true)),
            Err(DdError::MissingStructure)
        );
        assert_eq!(
            reader
                .read(&l1t3_keyframe(1))
                .unwrap()
                .active_decode_targets,
            Some(0b111)
        );
        assert_eq!(
            reader.read(&b.bytes).unwrap().active_decode_targets,
            Some(0b011)
        );
        let d = reader.read(&l1t3_packet(2, 9, true)).unwrap();
        assert_eq!((d.temporal_id, d.active_decode_targets), (1, Some(0b011)));
        assert_eq!(
            reader
                .read(&l1t3_keyframe(10))
                .unwrap()
                .active_decode_targets,
            Some(0b111)
        );
    }

    #[test]
    fn reader_replaces_the_structure_only_when_a_new_one_parses() {
        let mut reader = DependencyDescriptorReader::new();
        reader.read(&l1t3_keyframe(1)).unwrap();
        assert_eq!(
            reader.read(&l1t3_packet(4, 2, true)).unwrap().temporal_id,
            2
        );
        // A truncated keyframe: error, and the old structure stays.
        let key = l1t3_keyframe(3);
        assert_eq!(reader.read(&key[..key.len() - 2]), Err(DdError::Truncated));
        assert_eq!(reader.structure(), Some(&l1t3_structure()));
        // A new structure with another offset (L1T1: one template at id 40).
        let mut b = Bits::default();
        b.put(1, 1).put(1, 1).put(40, 6).put(4, 16).put(0b10000, 5);
        b.put(40, 6)
            .put(0, 5)
            .put(3, 2)
            .put(2, 2)
            .put(0, 1)
            .put(0, 1)
            .put(0, 1);
        let d = reader.read(&b.bytes).unwrap();
        assert!(d.structure_attached && d.resolution.is_none());
        assert_eq!(reader.structure().unwrap().templates().len(), 1);
        // The old template ids no longer resolve.
        assert_eq!(
            reader.read(&l1t3_packet(2, 5, true)),
            Err(DdError::UnknownTemplate)
        );
        let mut b = Bits::default();
        b.put(1, 1).put(1, 1).put(40, 6).put(5, 16);
        assert_eq!(reader.read(&b.bytes).unwrap().frame_number, 5);
    }

    #[test]
    fn template_ids_wrap_modulo_64() {
        let mut b = Bits::default();
        b.put(1, 1).put(1, 1).put(62, 6).put(0, 16).put(0b10000, 5);
        // offset 62, 1 decode target, templates T0, T1, T2 (ids 62, 63, 0), no chains.
        b.put(62, 6).put(0, 5).put(1, 2).put(1, 2).put(3, 2);
        b.put(2, 2).put(2, 2).put(1, 2); // DTIs
        b.put(0, 1)
            .put(1, 1)
            .put(0, 4)
            .put(0, 1)
            .put(1, 1)
            .put(1, 4)
            .put(0, 1);
        b.put(0, 1); // ns(2) of 0 chains: w = 2, m = 2, v = 0 in 1 bit
        b.put(0, 1); // no resolutions
        let s = DependencyStructure::from_extension(&b.bytes)
            .unwrap()
            .unwrap();
        assert_eq!(s.chain_count(), 0);
        let mut p = Bits::default();
        p.put(1, 1).put(1, 1).put(0, 6).put(9, 16);
        let d = parse(&p.bytes, Some(&s)).unwrap();
        assert_eq!((d.temporal_id, d.frame_diffs.as_slice()), (2, &[2][..]));
        assert!(d.chain_diffs.as_slice().is_empty());
        assert_eq!(s.decode_target_protected_by(0), None);
    }

    #[test]
    fn limits_are_enforced() {
        // 65 templates of the same layer.
        let mut b = Bits::default();
        b.put(1, 1)
            .put(1, 1)
            .put(0, 6)
            .put(0, 16)
            .put(0b10000, 5)
            .put(0, 6)
            .put(0, 5);
        for _ in 0..64 {
            b.put(0, 2);
        }
        b.put(3, 2);
        b.put(0, 200);
        assert_eq!(parse(&b.bytes, None), Err(DdError::TooManyTemplates));
        // Temporal id 8.
        let mut b = Bits::default();
        b.put(1, 1)
            .put(1, 1)
            .put(0, 6)
            .put(0, 16)
            .put(0b10000, 5)
            .put(0, 6)
            .put(0, 5);
        for _ in 0..8 {
            b.put(1, 2);
        }
        b.put(0, 64);
        assert_eq!(parse(&b.bytes, None), Err(DdError::TooManyLayers));
        // Spatial id 4.
        let mut b = Bits::default();
        b.put(1, 1)
            .put(1, 1)
            .put(0, 6)
            .put(0, 16)
            .put(0b10000, 5)
            .put(0, 6)
            .put(0, 5);
        for _ in 0..4 {
            b.put(2, 2);
        }
        b.put(0, 64);
        assert_eq!(parse(&b.bytes, None), Err(DdError::TooManyLayers));
        // 17 frame diffs in a template.
        let mut b = Bits::default();
        b.put(1, 1)
            .put(1, 1)
            .put(0, 6)
            .put(0, 16)
            .put(0b10000, 5)
            .put(0, 6)
            .put(0, 5);
        b.put(3, 2).put(2, 2);
        for _ in 0..17 {
            b.put(1, 1).put(0, 4);
        }
        b.put(0, 16);
        assert_eq!(parse(&b.bytes, None), Err(DdError::TooManyFrameDiffs));
        // 17 custom frame diffs in a packet.
        let s = l1t3_structure();
        let mut b = Bits::default();
        b.put(1, 1)
            .put(1, 1)
            .put(L1T3_OFFSET, 6)
            .put(0, 16)
            .put(0b00010, 5);
        for _ in 0..17 {
            b.put(1, 2).put(0, 4);
        }
        b.put(0, 8);
        assert_eq!(parse(&b.bytes, Some(&s)), Err(DdError::TooManyFrameDiffs));
    }

    /// A random structure satisfying the format's ordering rules.
    fn random_structure(rng: &mut XorShift) -> DependencyStructure {
        let dt_count = 1 + rng.below(MAX_DECODE_TARGETS);
        let chain_count = rng.below(dt_count + 1);
        let template_count = 1 + rng.below(MAX_TEMPLATES);
        let mut templates = Vec::new();
        let (mut sid, mut tid) = (0u8, 0u8);
        for i in 0..template_count {
            if i > 0 {
                match rng.below(3) {
                    1 if usize::from(tid) + 1 < MAX_TEMPORAL_IDS => tid += 1,
                    2 if usize::from(sid) + 1 < MAX_SPATIAL_IDS => {
                        sid += 1;
                        tid = 0;
                    }
                    _ => {}
                }
            }
            let dtis: Vec<Dti> = (0..dt_count)
                .map(|_| Dti::from_bits(rng.next_u64()))
                .collect();
            let fdiffs: Vec<u16> = (0..rng.below(4))
                .map(|_| 1 + rng.below(16) as u16)
                .collect();
            let chains: Vec<u8> = (0..chain_count).map(|_| rng.below(16) as u8).collect();
            templates.push(FrameTemplate {
                spatial_id: sid,
                temporal_id: tid,
                dtis: Dtis::from_slice(&dtis).unwrap(),
                frame_diffs: FrameDiffs::from_slice(&fdiffs).unwrap(),
                chain_diffs: ChainDiffs::from_slice(&chains).unwrap(),
            });
        }
        let protected_by: Vec<u8> = if chain_count == 0 {
            Vec::new()
        } else {
            (0..dt_count)
                .map(|_| rng.below(chain_count) as u8)
                .collect()
        };
        let resolutions: Vec<Resolution> = if rng.below(2) == 0 {
            Vec::new()
        } else {
            (0..=sid)
                .map(|_| Resolution {
                    width: 1 + rng.below(65536) as u32,
                    height: 1 + rng.below(65536) as u32,
                })
                .collect()
        };
        DependencyStructure::new(
            rng.below(64) as u8,
            dt_count,
            chain_count,
            &protected_by,
            &templates,
            &resolutions,
        )
        .unwrap()
    }

    #[test]
    fn written_descriptors_round_trip() {
        // The hand-built L1T3 keyframe is exactly what write produces.
        let key = l1t3_keyframe(100);
        let s = l1t3_structure();
        let d = parse(&key, None).unwrap();
        // Structures can exceed what a two-byte header extension (255 bytes) can carry.
        let mut out = [0u8; 2048];
        let n = write(&mut out, &d, &s, true).unwrap();
        assert_eq!(out[..n], key[..]);
        // A plain packet is written in 3 bytes.
        let p = l1t3_packet(3, 77, false);
        let d = parse(&p, Some(&s)).unwrap();
        assert_eq!(write(&mut out, &d, &s, false), Ok(3));
        assert_eq!(out[..3], p[..]);
        assert_eq!(
            write(&mut out[..2], &d, &s, false),
            Err(DdError::BufferTooSmall)
        );

        let mut rng = XorShift(7);
        for _ in 0..300 {
            let s = random_structure(&mut rng);
            let index = rng.below(s.templates().len());
            let template_id = ((usize::from(s.template_id_offset()) + index) % 64) as u8;
            // A keyframe packet attaching the structure parses back to it.
            let n = write(&mut out, &descriptor_for(&s, template_id), &s, true).unwrap();
            assert_eq!(
                DependencyStructure::from_extension(&out[..n])
                    .unwrap()
                    .as_ref(),
                Some(&s)
            );
            let mut d = parse(&out[..n], None).unwrap();
            assert!(d.structure_attached);
            assert_eq!((d.template_id, d.frame_number), (template_id, 1));
            assert_eq!(d.dtis, s.templates()[index].dtis);
            // Customise the frame and round-trip it against the stored structure.
            d.structure_attached = false;
            d.frame_number = rng.next_u64() as u16;
            d.start_of_frame = rng.below(2) == 0;
            d.end_of_frame = rng.below(2) == 0;
            if rng.below(2) == 0 {
                let dtis: Vec<Dti> = (0..s.decode_target_count())
                    .map(|_| Dti::from_bits(rng.next_u64()))
                    .collect();
                d.dtis = Dtis::from_slice(&dtis).unwrap();
            }
            if rng.below(2) == 0 {
                let fdiffs: Vec<u16> = (0..rng.below(MAX_FRAME_DIFFS + 1))
                    .map(|_| 1 + rng.below(4096) as u16)
                    .collect();
                d.frame_diffs = FrameDiffs::from_slice(&fdiffs).unwrap();
            }
            if rng.below(2) == 0 {
                let chains: Vec<u8> = (0..s.chain_count()).map(|_| rng.byte()).collect();
                d.chain_diffs = ChainDiffs::from_slice(&chains).unwrap();
            }
            let all = (u64::MAX >> (64 - s.decode_target_count())) as u32;
            d.active_decode_targets = (rng.below(2) == 0).then(|| rng.next_u64() as u32 & all);
            d.layer_switch_point = (0..s.decode_target_count()).any(|dt| {
                d.dtis.get(dt) == Some(Dti::Switch)
                    && s.decode_target_layers(dt) == Some((d.spatial_id, d.temporal_id))
            });
            let n = write(&mut out, &d, &s, false).unwrap();
            assert_eq!(parse(&out[..n], Some(&s)), Ok(d));
        }
    }

    /// A descriptor for `template_id` of `s` with the template's own fields.
    fn descriptor_for(s: &DependencyStructure, template_id: u8) -> DependencyDescriptor {
        let t = s.template(template_id).unwrap();
        DependencyDescriptor {
            start_of_frame: true,
            end_of_frame: false,
            template_id,
            frame_number: 1,
            spatial_id: t.spatial_id,
            temporal_id: t.temporal_id,
            dtis: t.dtis,
            frame_diffs: t.frame_diffs,
            chain_diffs: t.chain_diffs,
            active_decode_targets: None,
            structure_attached: true,
            resolution: None,
            layer_switch_point: false,
        }
    }

    #[test]
    fn constructor_rejects_unencodable_structures() {
        let t = |sid, tid| FrameTemplate {
            spatial_id: sid,
            temporal_id: tid,
            dtis: Dtis::from_slice(&[Dti::Switch]).unwrap(),
            frame_diffs: FrameDiffs::default(),
            chain_diffs: ChainDiffs::default(),
        };
        assert!(DependencyStructure::new(0, 1, 0, &[], &[t(0, 0), t(0, 1)], &[]).is_ok());
        // Must start at (0, 0); temporal ids step by one; spatial ids restart at T0.
        assert!(DependencyStructure::new(0, 1, 0, &[], &[t(0, 1)], &[]).is_err());
        assert!(DependencyStructure::new(0, 1, 0, &[], &[t(0, 0), t(0, 2)], &[]).is_err());
        assert!(DependencyStructure::new(0, 1, 0, &[], &[t(0, 0), t(1, 1)], &[]).is_err());
        // DTI count must match; chains need protected_by; offsets are 6 bits.
        assert!(DependencyStructure::new(0, 2, 0, &[], &[t(0, 0)], &[]).is_err());
        assert!(DependencyStructure::new(0, 1, 1, &[], &[t(0, 0)], &[]).is_err());
        assert!(DependencyStructure::new(64, 1, 0, &[], &[t(0, 0)], &[]).is_err());
        assert!(DependencyStructure::new(0, 1, 0, &[], &[], &[]).is_err());
        // One resolution per spatial layer.
        let r = Resolution {
            width: 1,
            height: 1,
        };
        assert!(DependencyStructure::new(0, 1, 0, &[], &[t(0, 0), t(1, 0)], &[r]).is_err());
        assert!(DependencyStructure::new(0, 1, 0, &[], &[t(0, 0), t(1, 0)], &[r, r]).is_ok());
        assert!(FrameDiffs::from_slice(&[0]).is_err() && FrameDiffs::from_slice(&[4097]).is_err());
        assert!(ChainDiffs::from_slice(&[0; 33]).is_err());
        assert!(Dtis::from_slice(&[Dti::Switch; 33]).is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let s = l1t3_structure();
        let mut reader = DependencyDescriptorReader::new();
        let mut out = [0u8; 512];
        test_util::sweep(|data| {
            let _ = parse(data, None);
            if let Ok(d) = parse(data, Some(&s)) {
                assert!(usize::from(d.spatial_id) < MAX_SPATIAL_IDS);
                assert!(usize::from(d.temporal_id) < MAX_TEMPORAL_IDS);
            }
            if let Ok(Some(attached)) = DependencyStructure::from_extension(data) {
                assert!(attached.templates().len() <= MAX_TEMPLATES);
                if let Ok(d) = parse(data, None) {
                    let n = write(&mut out, &d, &attached, true).unwrap();
                    let again = parse(&out[..n], None).unwrap();
                    assert_eq!(again, d);
                    assert_eq!(
                        DependencyStructure::from_extension(&out[..n]),
                        Ok(Some(attached))
                    );
                }
            }
            let _ = reader.read(data);
        });
    }
}
