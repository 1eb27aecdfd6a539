"""Parquet page encoding of survivor batches, straight from the kernels' output (rfsweep.output.parquet).

One call encodes a batch's row groups, every column of each in parallel (one column of one group a
task, spread over threads by rfsweep.engine.threads.spread). A column's values are computed from ``out``
(the kernels' int64 fields x rows) and ``choice`` (positions x rows) a few thousand rows at a time, so
no per-column array of the batch is made.
Encodings, by column (``desc``):

* ``M_LUT``: a per-layer field (op, kernel, ...): the dictionary is the field's values at that position,
  known before the walk, and a choice's index is looked up (no hashing);
* ``M_CONST``: one value (the padding);
* ``M_RANGE``: an integer column whose row group spans at most ``RANGE_MAX`` values: the dictionary is
  min..max and a value's index is ``value - min``; wider ones go on to
* ``M_HASH``: a dictionary in first-seen order by open addressing, while it holds at most ``DICT_MAX``
  values; then plain;
* ``M_DELTA``: DELTA_BINARY_PACKED (arch_id, in increasing order), only where every miniblock's bit width
  is at most ``DELTA_MAX_BITS``: fastparquet misreads miniblocks of 28 bits or more (rfsweep.output.writer),
  so a row group with a wider gap between ids is written plain, and rfsweep writes nothing a common reader
  gets wrong;
* ``M_PLAIN``.

Layouts follow the Parquet format specification (Encodings.md):

    dictionary indices:  <bit width: 1 byte> <rle/bit-packed hybrid runs>
    definition levels:   <length: 4 bytes LE> <rle/bit-packed hybrid runs, bit width 1>
    hybrid run:          varint(n << 1) value (ceil(bw/8) bytes LE)   -- n repeats of one value
                         varint(g << 1 | 1) g*bw bytes                 -- g groups of 8 bit-packed values
    delta:               varint(128) varint(4) varint(count) zigzag(first value), then per 128 deltas:
                         zigzag(min delta) 4 bit widths, 4 miniblocks of 32 (delta - min) bit-packed
"""

import numpy as np
from numba import njit

from rfsweep.kernels.layer_math import C_CIN, C_MAX_WIDTH, C_WIDTH, O_PAD, O_RF, layer_channels

# value kinds (desc[c, D_KIND]) and encodings (desc[c, D_MODE])
K_OUT, K_CENTER, K_SIGMA, K_LAYER, K_CHANNELS, K_CONST = range(6)
M_PLAIN, M_HASH, M_LUT, M_CONST, M_RANGE, M_DELTA = range(6)
# desc columns: kind, source row of out (or field table of a K_LAYER), layer position, encoding, nullable
# (null past a row's depth), value bytes in plain encoding (4 or 8), dictionary size of an M_LUT
# and the dictionary size of the row group before (D_HINT: a hashed dictionary's first table size)
D_KIND, D_SRC, D_POS, D_MODE, D_NULL, D_WIDTH, D_COUNT, D_HINT = range(8)
ND = 8
DICT_MAX = 1 << 16  # distinct values a hashed dictionary may hold (index bit width <= 16)
RANGE_MAX = 1 << 12  # the most values an M_RANGE dictionary spans
MAX_GROUPS = 63  # bit-packed groups per run header: one header byte, as Arrow writes them
CHUNK = 4096  # rows whose values are computed at a time, then encoded
DELTA_BLOCK, DELTA_MINI = 128, 32
# the widest miniblock written as a delta: fastparquet 2026.9 reads widths up to 28 right and 30 wrong
# (tests/output/test_interop.py reads ours back with it), so 4 bits to spare; R7 [223, 225]'s ids need 22
DELTA_MAX_BITS = 24
DENSE_RUN = 4  # a column whose value changes every 4 rows or more often is bit-packed whole, not as runs


@njit(cache=True, nogil=True)
def _varint(buf, pos, v):
    while v >= 0x80:
        buf[pos] = (v & 0x7F) | 0x80
        pos += 1
        v >>= 7
    buf[pos] = v
    return pos + 1


@njit(cache=True, nogil=True)
def _literals(vals, a, b, bw, buf, pos):
    """vals[a:b] as bit-packed runs (b - a is a multiple of 8 except at the end, where zeros pad)."""
    while a < b:
        groups = min((b - a + 7) // 8, MAX_GROUPS)
        pos = _varint(buf, pos, (groups << 1) | 1)
        end = a + groups * 8
        if bw <= 8 and end <= b:  # whole groups of 8 values in one 64-bit word each
            for g in range(a, end, 8):
                acc = 0
                for i in range(8):
                    acc |= vals[g + i] << (i * bw)
                for k in range(bw):
                    buf[pos + k] = (acc >> (8 * k)) & 0xFF
                pos += bw
            a = end
            continue
        for g in range(a, end, 8):  # 8 values are bw bytes: in two 64-bit words (bw <= 16 here)
            lo = 0
            hi = 0
            for i in range(8):
                v = vals[g + i] if g + i < b else 0
                sh = i * bw
                if sh < 64:
                    lo |= v << sh
                    if sh + bw > 64:
                        hi |= v >> (64 - sh)
                else:
                    hi |= v << (sh - 64)
            for q in range(bw):
                buf[pos + q] = ((lo >> (8 * q)) if q < 8 else (hi >> (8 * (q - 8)))) & 0xFF
            pos += bw
        a = end
    return pos


@njit(cache=True, nogil=True)
def hybrid_runs(rv, rl, n, bw, buf, pos):
    """Runs (value rv[i] repeated rl[i] times, each value < 2**bw) as RLE / bit-packed hybrid runs at
    buf[pos:]; returns the end. A run of 8 or more is one RLE run (after lending its head to the
    literals before it, which must end on a group of 8); shorter ones are bit-packed."""
    width = (bw + 7) // 8
    pend = np.empty(8 * MAX_GROUPS, np.int64)  # literals not yet written
    k = 0
    for i in range(n):
        v = rv[i]
        length = rl[i]
        if length >= 8:
            fill = (8 - k % 8) % 8
            if length - fill >= 8:
                for _ in range(fill):
                    pend[k] = v
                    k += 1
                if k:
                    pos = _literals(pend, 0, k, bw, buf, pos)
                    k = 0
                pos = _varint(buf, pos, (length - fill) << 1)
                for b in range(width):
                    buf[pos] = (v >> (8 * b)) & 0xFF
                    pos += 1
                continue
        for _ in range(length):
            pend[k] = v
            k += 1
            if k == 8 * MAX_GROUPS:
                pos = _literals(pend, 0, k, bw, buf, pos)
                k = 0
    if k:
        pos = _literals(pend, 0, k, bw, buf, pos)
    return pos


CHUNK = 4096  # rows whose values are computed at a time, then encoded (they stay in the L1/L2 cache)


@njit(cache=True, nogil=True)
def _fill(desc, c, out, depth_row, choice, tables, cons, lo, hi, vals, fvals, floats):
    """The present values of column c in rows lo:hi into vals; returns how many. The float columns give
    integer keys (center: 2 x center = rf - 1 - 2 x eff_padding; an ERF sigma: 12 x its variance, the
    kernels' own integer), whose dictionary the caller turns into floats, or with ``floats`` the
    values themselves (their bits, through fvals, a float64 view of vals). One loop per kind, the test
    outside it (a per-row function taking the arrays cost ~70 ns a value in reference counting)."""
    kind = desc[c, D_KIND]
    src = desc[c, D_SRC]
    p = desc[c, D_POS]
    if desc[c, D_NULL] == 0:
        m = hi - lo
        if kind == K_OUT:
            for j in range(m):
                vals[j] = out[src, lo + j]
            return m
        if kind == K_CENTER and floats:
            for j in range(m):
                fvals[j] = (out[O_RF, lo + j] - 1) / 2.0 - out[O_PAD, lo + j]
            return m
        if kind == K_CENTER:
            for j in range(m):
                vals[j] = out[O_RF, lo + j] - 1 - 2 * out[O_PAD, lo + j]
            return m
        if kind == K_SIGMA and floats:
            for j in range(m):
                fvals[j] = np.sqrt(out[src, lo + j] / 12.0)
            return m
        if kind == K_SIGMA:
            for j in range(m):
                vals[j] = out[src, lo + j]
            return m
        for j in range(m):  # the rest by row number, as the nullable columns
            vals[j] = lo + j
    else:  # the rows that reach position p, first
        m = 0
        for r in range(lo, hi):
            if out[depth_row, r] > p:
                vals[m] = r
                m += 1
    if kind == K_OUT or (kind == K_SIGMA and not floats):
        for j in range(m):
            vals[j] = out[src, vals[j]]
    elif kind == K_LAYER:
        for j in range(m):
            r = vals[j]
            vals[j] = tables[src, p, choice[p, r]]
    elif kind == K_CHANNELS:
        for j in range(m):
            r = vals[j]
            cin = cons[C_CIN]
            ndown = 0
            for q in range(p + 1):
                ch = choice[q, r]
                if tables[2, q, ch] > 1:  # stride
                    ndown += 1
                cin = layer_channels(tables[0, q, ch], tables[4, q, ch], cin, cons[C_WIDTH], cons[C_MAX_WIDTH], ndown)
            vals[j] = cin
    elif kind == K_CONST:
        for j in range(m):
            vals[j] = 0
    elif kind == K_CENTER and floats:
        for j in range(m):
            r = vals[j]
            fvals[j] = (out[O_RF, r] - 1) / 2.0 - out[O_PAD, r]
    elif kind == K_CENTER:
        for j in range(m):
            r = vals[j]
            vals[j] = out[O_RF, r] - 1 - 2 * out[O_PAD, r]
    else:  # K_SIGMA, floats
        for j in range(m):
            fvals[j] = np.sqrt(out[src, vals[j]] / 12.0)
    return m


@njit(cache=True, nogil=True)
def _uvarint(buf, pos, v):
    """An int64 taken as unsigned, as a ULEB128 varint."""
    while True:
        b = v & 0x7F
        v = (v >> 7) & 0x01FFFFFFFFFFFFFF
        if v == 0:
            buf[pos] = b
            return pos + 1
        buf[pos] = b | 0x80
        pos += 1


@njit(cache=True, nogil=True)
def _zigzag(v):
    return (v << 1) ^ (v >> 63)


@njit(cache=True, nogil=True)
def _delta_block(d, k, buf, pos):
    """One block of k <= 128 deltas at buf[pos:]; -1 where a miniblock would be wider than DELTA_MAX_BITS
    (or a delta overflows int64): the caller writes the page plain."""
    mn = d[0]
    for i in range(1, k):
        mn = min(mn, d[i])
    pos = _uvarint(buf, pos, _zigzag(mn))
    widths = pos
    pos += DELTA_BLOCK // DELTA_MINI
    for mb in range(DELTA_BLOCK // DELTA_MINI):
        a = mb * DELTA_MINI
        if a >= k:  # a last block's unneeded miniblocks: width 0, no body
            buf[widths + mb] = 0
            continue
        b = min(k, a + DELTA_MINI)
        mx = 0
        for i in range(a, b):
            x = d[i] - mn
            if x < 0:  # past 63 bits
                return -1
            mx = max(mx, x)
        bw = 0
        while (mx >> bw) != 0:
            bw += 1
        if bw > DELTA_MAX_BITS:
            return -1
        buf[widths + mb] = bw
        acc = 0  # values of bw <= 24 bits, little-endian, least significant bit first
        nb = 0
        for i in range(a, a + DELTA_MINI):
            x = d[i] - mn if i < b else 0
            acc |= x << nb
            nb += bw
            while nb >= 8:
                buf[pos] = acc & 0xFF
                pos += 1
                acc >>= 8
                nb -= 8
    return pos


@njit(cache=True, nogil=True)
def _delta(desc, c, out, depth_row, choice, tables, cons, lo, hi, present, page, pos, vals, fvals):
    """DELTA_BINARY_PACKED values of column c into page[pos:]; returns the end, or -1 where a miniblock
    would be too wide (the caller goes plain)."""
    d = np.empty(DELTA_BLOCK, np.int64)
    pos = _uvarint(page, pos, DELTA_BLOCK)
    pos = _uvarint(page, pos, DELTA_BLOCK // DELTA_MINI)
    pos = _uvarint(page, pos, present)
    k = 0
    last = 0
    first = True
    for a in range(lo, hi, CHUNK):
        n = _fill(desc, c, out, depth_row, choice, tables, cons, a, min(hi, a + CHUNK), vals, fvals, False)
        for j in range(n):
            v = vals[j]
            if first:
                pos = _uvarint(page, pos, _zigzag(v))
                first = False
            else:
                d[k] = v - last
                k += 1
                if k == DELTA_BLOCK:
                    pos = _delta_block(d, k, page, pos)
                    if pos < 0:
                        return -1
                    k = 0
            last = v
    if first:  # no values
        pos = _uvarint(page, pos, 0)
    elif k:
        pos = _delta_block(d, k, page, pos)
    return pos


@njit(cache=True, nogil=True)
def _bit_width(count):
    bw = 1
    while (1 << bw) < count:
        bw += 1
    return bw


@njit(cache=True, nogil=True)
def _hashed(desc, c, out, depth_row, choice, tables, cons, lo, hi, vals, fvals, rv, rl, dk, slots):
    """Runs of indices into a dictionary built in first-seen order: (runs or values, dictionary size,
    dense), size -1 past DICT_MAX, -3 when the table of ``slots`` is half full (the caller retries with a
    larger one: open addressing in a table never regrown here, since reassigning an array in the loop
    made numba count references on every row). Each slot holds a key and its index side by side (one
    cache line a probe). Where the first CHUNK values change every DENSE_RUN or more often (R7's params,
    macs and ERF sigmas), every value is looked up and kept, to be bit-packed whole (``dense``: no run
    test, which mispredicted there, as in :func:`_ranged`); otherwise only a run's first value is."""
    table = np.full(2 * slots, -1, np.int64)  # [2s]: a key, [2s + 1]: its index (-1: empty)
    shift = 64 - _bit_width(slots)
    count = 0
    prev = 0
    dense = False
    n = -1  # runs so far, the last one open: its length in `length` until it closes; dense: values - 1
    length = 0
    for a in range(lo, hi, CHUNK):
        m = _fill(desc, c, out, depth_row, choice, tables, cons, a, min(hi, a + CHUNK), vals, fvals, False)
        if m == 0:
            continue
        if n < 0:
            changes = 0
            for j in range(1, m):
                changes += vals[j] != vals[j - 1]
            dense = changes * DENSE_RUN > m
        for j in range(m):
            key = vals[j]
            if not dense and key == prev and n >= 0:
                length += 1
                continue
            if n >= 0 and not dense:
                rl[n] = length
            s = (key * -7046029254386353131 >> shift) & (slots - 1)  # Fibonacci hashing: the top bits
            while table[2 * s + 1] >= 0 and table[2 * s] != key:
                s = (s + 1) & (slots - 1)
            if table[2 * s + 1] < 0:
                if count == DICT_MAX:
                    return 0, -1, False
                if 2 * count >= slots:
                    return 0, -3, False
                table[2 * s] = key
                table[2 * s + 1] = count
                dk[count] = key
                count += 1
            prev = key
            n += 1
            rv[n] = table[2 * s + 1]
            length = 1
    if n >= 0 and not dense:
        rl[n] = length
    return n + 1, count, dense


@njit(cache=True, nogil=True)
def _ranged(desc, c, out, depth_row, choice, tables, cons, lo, hi, vals, fvals, rv, rl, dk):
    """Indices value - min into the dictionary min..max: (runs or values, dictionary size, dense), size -1
    where that spans more than RANGE_MAX. One pass, offsets from the first value (shifted at the end if a
    smaller one came). Where the first CHUNK values change every DENSE_RUN or more often, every value is
    kept and bit-packed whole (``dense``: free of branches; the run test mispredicted on such columns,
    measured 2x slower); otherwise runs."""
    base = 0
    lo_off = 0
    hi_off = 0
    dense = False
    prev = 0
    length = 0
    n = -1  # runs: the last one open, its length in `length`; dense: values so far - 1
    for a in range(lo, hi, CHUNK):
        k = _fill(desc, c, out, depth_row, choice, tables, cons, a, min(hi, a + CHUNK), vals, fvals, False)
        if k == 0:
            continue
        if n < 0:
            base = vals[0]
            changes = 0
            for j in range(1, k):
                changes += vals[j] != vals[j - 1]
            dense = changes * DENSE_RUN > k
        if dense:
            for j in range(k):
                off = vals[j] - base
                lo_off = min(lo_off, off)
                hi_off = max(hi_off, off)
                rv[n + 1 + j] = off  # truncated when out of range: then abandoned below
            n += k
            if hi_off - lo_off >= RANGE_MAX or hi_off - lo_off < 0:
                return 0, -1, False
            continue
        for j in range(k):
            v = vals[j]
            if v == prev and n >= 0:
                length += 1
                continue
            off = v - base
            if off < lo_off:
                lo_off = off
            elif off > hi_off:
                hi_off = off
            if hi_off - lo_off >= RANGE_MAX or hi_off - lo_off < 0:
                return 0, -1, False
            if n >= 0:
                rl[n] = length
            n += 1
            rv[n] = off
            prev = v
            length = 1
    if n >= 0 and not dense:
        rl[n] = length
    n += 1
    if lo_off < 0:
        for i in range(n):
            rv[i] -= lo_off
    for e in range(hi_off - lo_off + 1):
        dk[e] = base + lo_off + e
    return n, hi_off - lo_off + 1, dense


@njit(cache=True, nogil=True)
def _choice_runs(c, desc, out, depth_row, choice, luts, lo, hi, rv, rl):
    """A per-layer column's dictionary indices straight from the choices (no values made): (runs or
    values, dense), dense where the choice changes every DENSE_RUN rows or more often in the first
    CHUNK rows (see _ranged)."""
    p = desc[c, D_POS]
    nullable = desc[c, D_NULL] != 0
    if hi <= lo:
        return 0, False
    changes = 0
    prev = choice[p, lo]
    sample = min(hi, lo + CHUNK)  # the first rows decide: depth-first order changes alike throughout
    for r in range(lo, sample):
        ch = choice[p, r]
        changes += ch != prev
        prev = ch
    if changes * DENSE_RUN > sample - lo:
        n = 0
        for r in range(lo, hi):
            if nullable and out[depth_row, r] <= p:
                continue
            rv[n] = luts[c, choice[p, r]]
            n += 1
        return n, True
    n = -1
    prev = -1
    cur = -1
    length = 0
    for r in range(lo, hi):
        if nullable and out[depth_row, r] <= p:
            continue
        ch = choice[p, r]
        if ch == prev:
            length += 1
            continue
        prev = ch
        v = luts[c, ch]
        if v == cur:  # another choice with the same value
            length += 1
            continue
        if n >= 0:
            rl[n] = length
        n += 1
        rv[n] = v
        cur = v
        length = 1
    if n >= 0:
        rl[n] = length
    return n + 1, False


@njit(cache=True, nogil=True)
def _encode_column(c, desc, out, depth_row, choice, tables, luts, cons, lo, hi, page, dk, rv, rl):
    """Column c of rows lo:hi into ``page``, a hashed or ranged dictionary into ``dk``; returns (bytes,
    dictionary size, or -1: plain, -2: delta; the encoding used, an M_*).
    ``rv`` and ``rl`` are scratch for runs, of at least hi - lo values (fresh arrays per column cost
    ~1 ms each in page faults, a third of the encoding: measured)."""
    p = desc[c, D_POS]
    mode = desc[c, D_MODE]
    rows = hi - lo
    vals = np.empty(CHUNK, np.int64)
    fvals = vals.view(np.float64)
    pos = 0
    present = rows
    if desc[c, D_NULL] != 0:  # definition levels: 1 where the row reaches position p
        n = -1
        present = 0
        cur = -1
        length = 0
        for r in range(lo, hi):
            d = 1 if out[depth_row, r] > p else 0
            present += d
            if d == cur:
                length += 1
                continue
            if n >= 0:
                rl[n] = length
            n += 1
            rv[n] = d
            cur = d
            length = 1
        if n >= 0:
            rl[n] = length
        end = hybrid_runs(rv, rl, n + 1, 1, page, 4)
        size = end - 4
        for k in range(4):
            page[k] = (size >> (8 * k)) & 0xFF
        pos = end
    count = -1
    n = 0
    used = M_PLAIN
    dense = False  # rv holds every value (bit-packed whole), not runs
    if mode == M_LUT:
        n, dense = _choice_runs(c, desc, out, depth_row, choice, luts, lo, hi, rv, rl)
        count = desc[c, D_COUNT]
        used = M_LUT
    elif mode == M_CONST:
        rv[0] = 0
        rl[0] = present
        n = 1 if present else 0
        count = 1
        used = M_CONST
    elif mode == M_DELTA:
        end = _delta(desc, c, out, depth_row, choice, tables, cons, lo, hi, present, page, pos, vals, fvals)
        if end >= 0:
            return end, -2, M_DELTA
    elif mode == M_RANGE:
        n, count, dense = _ranged(desc, c, out, depth_row, choice, tables, cons, lo, hi, vals, fvals, rv, rl, dk)
        used = M_RANGE
    if count < 0 and (mode == M_RANGE or mode == M_HASH):
        used = M_HASH
        # a table for 2x the last row group's values, grown when half full: small enough to stay in a
        # core's L2 (R7's macs, 17,550 values: 65,536 slots, 768 KB; with 4x, 1.5 MB, and fmix64 as the
        # hash, its page took 4.9 ms a 512K-row group against 3.9-4.2 now, erf_sigma 2.9 against 2.5)
        slots = 1024
        while slots < 2 * desc[c, D_HINT] and slots < 2 * DICT_MAX:
            slots *= 2
        while True:
            n, count, dense = _hashed(
                desc, c, out, depth_row, choice, tables, cons, lo, hi, vals, fvals, rv, rl, dk, slots
            )
            if count != -3:
                break
            slots = min(4 * slots, 2 * DICT_MAX)
    if count >= 0:
        bw = _bit_width(count)
        page[pos] = bw
        if dense:
            return _literals(rv, 0, n, bw, page, pos + 1), count, used
        return hybrid_runs(rv, rl, n, bw, page, pos + 1), count, used
    width = desc[c, D_WIDTH]
    for a in range(lo, hi, CHUNK):  # plain: the present values, little-endian
        m = _fill(desc, c, out, depth_row, choice, tables, cons, a, min(hi, a + CHUNK), vals, fvals, True)
        for j in range(m):
            v = vals[j]
            for k in range(width):
                page[pos] = (v >> (8 * k)) & 0xFF
                pos += 1
    return pos, -1, M_PLAIN


@njit(cache=True, nogil=True)
def _extremes(desc, c, out, depth_row, choice, tables, cons, lo, hi, ext, fext):
    """The statistics of column c in rows lo:hi, from the values as written (kernels.encode._fill): min and
    max in ext[0], ext[1] (floats: fext[0], fext[1], a float64 view; the op column: a bit mask of its
    codes in ext[1], the caller orders their names); returns how many values are present."""
    kind = desc[c, D_KIND]
    floats = kind == K_CENTER or kind == K_SIGMA
    op = kind == K_LAYER and desc[c, D_SRC] == 0
    vals = np.empty(CHUNK, np.int64)
    fvals = vals.view(np.float64)
    imin = np.iinfo(np.int64).max
    imax = np.iinfo(np.int64).min
    fmin = np.inf
    fmax = -np.inf
    mask = 0
    total = 0
    for a in range(lo, hi, CHUNK):
        m = _fill(desc, c, out, depth_row, choice, tables, cons, a, min(hi, a + CHUNK), vals, fvals, floats)
        total += m
        if floats:
            for j in range(m):
                fmin = min(fmin, fvals[j])
                fmax = max(fmax, fvals[j])
        elif op:
            for j in range(m):
                mask |= 1 << vals[j]
        else:
            for j in range(m):
                imin = min(imin, vals[j])
                imax = max(imax, vals[j])
    if floats:
        fext[0] = fmin
        fext[1] = fmax
    elif op:
        ext[1] = mask
    else:
        ext[0] = imin
        ext[1] = imax
    return total


@njit(cache=True, nogil=True)
def _present(desc, c, out, depth_row, lo, hi):
    """How many rows of lo:hi have a value in column c (all, unless it is null past a row's depth)."""
    if desc[c, D_NULL] == 0:
        return hi - lo
    p = desc[c, D_POS]
    m = 0
    for r in range(lo, hi):
        if out[depth_row, r] > p:
            m += 1
    return m


@njit(cache=True, nogil=True)
def _key_extremes(kind, keys, count, ext, fext):
    """Min and max of a hashed or ranged dictionary's keys, as values (center: key / 2; an ERF sigma:
    sqrt(key / 12), as rfsweep.output.parquet._dictionary_page makes them), into ext or fext."""
    lo = keys[0]
    hi = keys[0]
    for i in range(1, count):
        lo = min(lo, keys[i])
        hi = max(hi, keys[i])
    if kind == K_CENTER:
        fext[0] = lo / 2.0
        fext[1] = hi / 2.0
    elif kind == K_SIGMA:
        fext[0] = np.sqrt(lo / 12.0)
        fext[1] = np.sqrt(hi / 12.0)
    else:
        ext[0] = lo
        ext[1] = hi


@njit(cache=True, nogil=True)
def encode_tasks(
    first, last, slot, desc, out, depth_row, choice, tables, luts, cons, bounds, buf, lens, counts, used, dict_keys,
    scratch, ext, present,
):  # fmt: skip
    """Tasks ``first .. last - 1`` of a batch's row groups, one column of one group (rows bounds[g, 0]:
    bounds[g, 1]) a task, ``t = g * columns + c``, on one thread: rfsweep.engine.threads.spread calls it on
    spans of the tasks from several threads (it releases the GIL), a batch's groups at once (the columns
    alone left a core idle behind the slowest, measured). No prange: an OpenMP team spun ~17 ms a call on
    its idle core after every call (libgomp's default wait), taking a core from the walk and the writer
    thread; and parfor lowering lengthened the first compile.

    Task ``t`` writes its page into buf[t, :lens[t]]; counts[t] is the dictionary's size (a hashed or
    ranged one in dict_keys[t, :counts[t]]), -1 where the values are plain, -2 delta-coded; used[t] the
    encoding it took (an M_*: a range may have gone on to a hash, either to plain). ``scratch``: int32,
    (2 x threads, at least the largest group): rows 2 x slot and 2 x slot + 1 are this thread's runs.
    ``ext[t]`` and ``present[t]``: the page's statistics (:func:`_extremes`, or a dictionary's keys; not for
    a constant column, K_CONST, nor a per-layer lookup, K_LAYER: see :func:`choices_present`)."""
    ncol = desc.shape[0]
    for t in range(first, last):
        g = t // ncol
        c = t - g * ncol
        lens[t], counts[t], used[t] = _encode_column(
            c,
            desc,
            out,
            depth_row,
            choice,
            tables,
            luts,
            cons,
            bounds[g, 0],
            bounds[g, 1],
            buf[t],
            dict_keys[t],
            scratch[2 * slot],
            scratch[2 * slot + 1],
        )
        kind = desc[c, D_KIND]
        if kind != K_CONST:
            lo, hi = bounds[g, 0], bounds[g, 1]
            fext = ext[t].view(np.float64)
            if kind == K_LAYER:  # a lookup of the choice: from the choices present (choices_present)
                present[t] = 0
            elif (used[t] == M_RANGE or used[t] == M_HASH) and counts[t] > 0:
                # the dictionary holds exactly the values present: its extremes are the page's (the
                # float columns' keys map to their values monotonically, by _dictionary_page's operations)
                present[t] = _present(desc, c, out, depth_row, lo, hi)
                _key_extremes(kind, dict_keys[t], counts[t], ext[t], fext)
            else:
                present[t] = _extremes(desc, c, out, depth_row, choice, tables, cons, lo, hi, ext[t], fext)


@njit(cache=True, nogil=True)
def choices_present(first, last, slot, out, depth_row, choice, bounds, seen, count):
    """Per row group g and position p (task ``t = g * positions + p``, tasks ``first .. last - 1``; spread
    over threads as :func:`encode_tasks`, ``slot`` unused): which choices rows bounds[g, 0]:bounds[g, 1]
    take there (seen[t, choice] = True; rows that reach p only) and how many rows reach it (count[t]). A
    per-layer column is a lookup of the choice, so its page's min and max are those of the choices
    present: one pass per position serves its four or five columns."""
    npos = choice.shape[0]
    for t in range(first, last):
        g = t // npos
        p = t - g * npos
        seen[t, :] = False
        m = 0
        for r in range(bounds[g, 0], bounds[g, 1]):
            if out[depth_row, r] > p:
                seen[t, choice[p, r]] = True
                m += 1
        count[t] = m
