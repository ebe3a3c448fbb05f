"""The alignment checker of entropyd's system tests: proves raw-mode delivery (DESIGN.md
invariant 2) from what clients received out of known file sources. Standard library only;
test_support_selfcheck.py exercises it against Python stand-ins so that a broken checker
cannot hide a broken daemon.
"""

import bisect
import collections
import struct


# ---------------------------------------------------------------------------------------
# Alignment checker
#
# Given the file F a file source read and the byte stream each client received, prove:
#   - each stream is a concatenation of pieces of F at strictly increasing offsets;
#   - no offset of F reached two clients (or one client twice);
#   - optionally: every offset is >= a minimum (the start-up bytes were discarded) and
#     none lies in forbidden ranges (a window that failed a health test).
#
# How: at stream position p, every candidate offset o >= L (L = end of this stream's
# previous piece) suggested by an index of F's 8-byte substrings at offsets that are
# multiples of 8 is extended as far as the bytes match; the longest match (>= 8 bytes) is
# taken as a piece. Then the places where greedy matching can be wrong by coincidence
# (each byte at a piece's edge matches the wrong neighbour with probability 1/256) are
# settled against what the other clients certainly received:
#   - bytes at the boundary of two adjacent pieces that match under both pieces' offsets
#     go to whichever offset no other client covers;
#   - a few bytes at a piece's edge next to an unplaced stretch that collide with another
#     client's piece are handed back to the stretch;
#   - unplaced stretches (tiny pieces, < 8 bytes or not containing an indexed position)
#     are written as pieces of F at offsets between their neighbours that no other client
#     covers; they must fit in exactly one way.
# Anything else fails with a message naming the client and the stream offset.
# Bytes served twice, bytes not from F, bytes out of order, start-up bytes and bytes of a
# failed window are all reported; a correct daemon is never reported unless it cuts its
# output into many pieces of a few bytes, and then the message says so.

_AMBIGUOUS = -1
MIN_ANCHOR = 8
MAX_GAP = 4096


class AlignmentError(AssertionError):
    pass


class FileIndex:
    def __init__(self, data):
        self.data = data
        idx = {}
        n8 = len(data) - len(data) % 8
        mv = memoryview(data)[:n8]
        for i, (key,) in enumerate(struct.iter_unpack("<Q", mv)):
            if key in idx:
                idx[key] = _AMBIGUOUS
            else:
                idx[key] = i * 8
        self.idx = idx

    def candidates(self, s, p):
        """File offsets o such that s[p+j:p+j+8] == F[o+j:o+j+8] with o+j aligned."""
        out = set()
        get = self.idx.get
        for j in range(8):
            if p + j + 8 > len(s):
                break
            a = get(int.from_bytes(s[p + j:p + j + 8], "little"))
            if a is not None and a != _AMBIGUOUS and a - j >= 0:
                out.add(a - j)
        return out


def _match_len(s, p, f, o):
    """Length of the common prefix of s[p:] and f[o:] (galloping, so the cost is
    proportional to the match, not to the rest of the stream)."""
    limit = min(len(s) - p, len(f) - o)
    if limit <= 0:
        return 0
    sv, fv = memoryview(s), memoryview(f)
    lo, step = 0, 64
    while True:
        hi = min(limit, lo + step)
        if bytes(sv[p + lo:p + hi]) == bytes(fv[o + lo:o + hi]):
            lo = hi
            if lo == limit:
                return limit
            step *= 2
        else:
            break
    # s[p:p+lo] matches; the mismatch is within (lo, hi].
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if s[p + lo:p + mid] == f[o + lo:o + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _back_match_len(s, p, f, o, limit):
    """How many bytes before s[p] match the bytes before f[o] (at most limit)."""
    k = 0
    while k < limit and p - k - 1 >= 0 and o - k - 1 >= 0 and s[p - k - 1] == f[o - k - 1]:
        k += 1
    return k


def _best_anchor(index, s, p, floor):
    """(offset, length) of the longest match >= MIN_ANCHOR starting at s[p] with offset
    >= floor, or None. Also returns the best match below floor (for error messages)."""
    f = index.data
    best = None
    below = None
    for o in index.candidates(s, p):
        m = _match_len(s, p, f, o)
        if m < MIN_ANCHOR and m != len(s) - p:
            continue
        if o >= floor:
            if best is None or m > best[1]:
                best = (o, m)
        elif below is None or m > below[1]:
            below = (o, m)
    return best, below


def _describe(label, p):
    return "%s, stream offset %d" % (label, p)


EDGE_SLACK = 8


class _Piece:
    __slots__ = ("p", "o", "m", "gap_before", "gap_after")

    def __init__(self, p, o, m):
        self.p, self.o, self.m = p, o, m
        self.gap_before = self.gap_after = None


class _Gap:
    """Stream bytes [p, q) still to be placed at file offsets in [floor, top)."""
    __slots__ = ("p", "q", "floor", "top")

    def __init__(self, p, q, floor, top):
        self.p, self.q, self.floor, self.top = p, q, floor, top


def _segment(index, s, label):
    """Greedy segmentation of one stream: [_Piece or _Gap] in stream order."""
    segs = []
    p, floor = 0, 0
    while p < len(s):
        best, below = _best_anchor(index, s, p, floor)
        if best is not None:
            o, m = best
            segs.append(_Piece(p, o, m))
            p, floor = p + m, o + m
            continue
        if below is not None:
            o, m = below
            raise AlignmentError(
                "%s: %d bytes found at file offset %d, before the end (%d) of this client's "
                "previous piece: a client's bytes must come from increasing file offsets "
                "(a byte served twice, or out of order)"
                % (_describe(label, p), m, o, floor))
        # No anchor here: find the next one and leave the stretch in between as a gap.
        q = p + 1
        nxt = None
        while q < len(s) and q - p <= MAX_GAP:
            nxt, _ = _best_anchor(index, s, q, floor)
            if nxt is not None:
                break
            q += 1
        if nxt is None and q < len(s):
            raise AlignmentError(
                "%s: %d bytes (%s...) cannot be located in the file at or after offset %d: "
                "bytes that the file source never produced, or bytes that occur at several "
                "places in the file (such as a run of equal bytes)"
                % (_describe(label, p), min(MAX_GAP, len(s) - p), s[p:p + 16].hex(), floor))
        gap = _Gap(p, q, floor, None)
        if segs and isinstance(segs[-1], _Piece):
            segs[-1].gap_after = gap
        segs.append(gap)
        if nxt is None:
            p = q
        else:
            o2, m2 = nxt
            gap.top = o2
            piece = _Piece(q, o2, m2)
            piece.gap_before = gap
            segs.append(piece)
            p, floor = q + m2, o2 + m2
    return segs


class _Stream:
    def __init__(self, label, s, segs, f):
        self.label, self.s = label, s
        self.pieces = [x for x in segs if isinstance(x, _Piece)]
        self.gaps = [x for x in segs if isinstance(x, _Gap)]
        # Boundary choices between adjacent pieces: the last k bytes of piece A that piece
        # B also matches backwards.
        self.zones = []  # (A, B, k)
        for a, b in zip(self.pieces, self.pieces[1:]):
            if a.p + a.m == b.p:
                k = _back_match_len(s, b.p, f, b.o, a.m - 1)
                if k:
                    self.zones.append((a, b, k))
        self.zone_of = {id(a): k for a, _b, k in self.zones}

    def definite(self):
        """(o_start, o_end, label, p, piece) for the bytes whose offset is certain."""
        out = []
        for x in self.pieces:
            m = x.m - self.zone_of.get(id(x), 0)
            if m > 0:
                out.append((x.o, x.o + m, self.label, x.p, x))
        return out


def _settle_edges(streams):
    """Hand colliding edge bytes of pieces next to gaps back to the gaps. Returns the
    sorted definite intervals once no such fix applies."""
    for _round in range(10000):
        intervals = sorted(iv for st in streams for iv in st.definite())
        fixed = False
        for (a1, b1, _l1, _p1, x), (a2, b2, _l2, _p2, y) in zip(intervals, intervals[1:]):
            if a2 >= b1:
                continue
            overlap = min(b1, b2) - a2
            if overlap > EDGE_SLACK:
                continue
            # x's end or y's start collides. Trim whichever is next to a gap.
            if x.gap_after is not None and b1 <= b2 and x.m > overlap:
                x.m -= overlap
                x.gap_after.p -= overlap
                x.gap_after.floor -= overlap
                fixed = True
            elif y.gap_before is not None and y.m > overlap and a2 + overlap <= b1:
                y.p += overlap
                y.o += overlap
                y.m -= overlap
                y.gap_before.q += overlap
                y.gap_before.top += overlap
                fixed = True
            if fixed:
                break
        if not fixed:
            return intervals
    raise AlignmentError("internal: edge settling does not converge")


def _place_pieces(f, holes, t, floor, limit=2, budget=200000):
    """Ways to write t as pieces of f at increasing, non-contiguous offsets >= floor, each
    inside one of the free holes [(a, b)]. Returns up to `limit` solutions, each
    [(t_pos, o, m)]; None if the search ran out of budget."""
    sols = []
    work = [0]

    def rec(i, lo, acc):
        if len(sols) >= limit:
            return
        if i == len(t):
            sols.append(list(acc))
            return
        for a, b in holes:
            if b <= lo:
                continue
            o = f.find(t[i:i + 1], max(a, lo), b)
            while o != -1:
                work[0] += 1
                if work[0] > budget:
                    raise _OutOfBudget()
                m = min(_match_len(t, i, f, o), b - o)
                for ln in range(m, 0, -1):  # longest first
                    acc.append((i, o, ln))
                    rec(i + ln, o + ln + 1, acc)  # contiguous would be the same piece
                    acc.pop()
                    if len(sols) >= limit:
                        return
                o = f.find(t[i:i + 1], o + 1, b)

    try:
        rec(0, floor, [])
    except _OutOfBudget:
        return None
    return sols


class _OutOfBudget(Exception):
    pass


class Coverage:
    """Sorted, non-overlapping intervals of file offsets, each tagged with its owner."""

    def __init__(self):
        self.starts = []
        self.items = []  # (start, end, owner)

    def conflict(self, start, end):
        i = bisect.bisect_right(self.starts, start) - 1
        for j in (i, i + 1):
            if 0 <= j < len(self.items):
                a, b, _owner = self.items[j]
                if a < end and start < b:
                    return self.items[j]
        return None

    def holes(self, start, end):
        """Free intervals within [start, end)."""
        out = []
        pos = start
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while i < len(self.items) and pos < end:
            a, b, _owner = self.items[i]
            i += 1
            if b <= pos:
                continue
            if a >= end:
                break
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        if pos < end:
            out.append((pos, end))
        return out

    def add(self, start, end, owner):
        c = self.conflict(start, end)
        if c is not None:
            return c
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.items.insert(i, (start, end, owner))
        return None


def align_streams(file_data, streams, min_offset=0, forbidden=(), index=None):
    """Check raw-mode delivery. streams: {label: bytes}. forbidden: [(start, end)] file
    ranges no client may receive. Returns {label: [(stream_pos, file_off, length)]} with
    every byte placed. Raises AlignmentError with a message that names the client and
    stream offset of the first problem."""
    if index is None:
        index = FileIndex(file_data)
    f = file_data
    sts = [_Stream(label, s, _segment(index, s, label), f) for label, s in streams.items()]

    intervals = _settle_edges(sts)
    cov = Coverage()
    prev = None
    for a, b, label, p, _x in intervals:
        if prev is not None and a < prev[1]:
            raise AlignmentError(
                "file offsets %d..%d reached two clients (or one client twice): %s "
                "(stream offset %d) and %s (stream offset %d)"
                % (a, min(b, prev[1]) - 1, prev[2], prev[3] + (a - prev[0]), label, p))
        cov.starts.append(a)
        cov.items.append((a, b, label))
        prev = (a, b, label, p)
    gmin = intervals[0][0] if intervals else 0
    gmax = max((iv[1] for iv in intervals), default=0)

    placed = {st.label: [(iv[3], iv[0], iv[1] - iv[0]) for iv in st.definite()]
              for st in sts}

    def take(label, option):
        for p, o, m in option:
            c = cov.add(o, o + m, label)
            assert c is None, "internal: option collides with %r" % (c,)
            placed[label].append((p, o, m))

    # Gaps (tiny pieces) first: the placement with the fewest pieces must be unique (each
    # extra cut needs a coincidence).
    for st in sts:
        for g in st.gaps:
            t = st.s[g.p:g.q]
            top = g.top
            if top is None:  # the stream's end: handed out no later than the last bytes
                top = min(len(f), gmax + len(t))
            bottom = max(g.floor, gmin - len(t))
            fits = _place_pieces(f, cov.holes(bottom, top), t, bottom, limit=32)
            if fits:
                fewest = min(len(x) for x in fits)
                fits = [x for x in fits if len(x) == fewest]
            if fits is None or len(fits) != 1:
                raise AlignmentError(
                    "%s: %d bytes (%s) cannot be located unambiguously: between file offsets "
                    "%d and %d, among the offsets no other piece covers, they fit %s (tiny "
                    "pieces, bytes served twice, or bytes that are not from the file)"
                    % (_describe(st.label, g.p), len(t), t[:16].hex(), bottom, top,
                       "nowhere" if fits == [] else
                       "too many ways to enumerate" if fits is None else
                       "in several ways, e.g. at %s and %s" % (
                           [o for _p, o, _m in fits[0]], [o for _p, o, _m in fits[1]])))
            take(st.label, [(g.p + i, o, m) for i, o, m in fits[0]])

    # Then boundary bytes: forced choices first (one split fits), repeatedly; where
    # several fit, any will do, and then the forced ones are looked at again.
    pending = []
    for st in sts:
        for a, b, k in st.zones:
            zp = b.p - k
            opts = []
            for j in range(k, -1, -1):  # the first j of the k bytes stay with a
                opt = []
                if j:
                    opt.append((zp, a.o + (zp - a.p), j))
                if k - j:
                    opt.append((zp + j, b.o - (k - j), k - j))
                opts.append(opt)
            pending.append((st.label, zp, k, opts))
    while pending:
        progress = False
        undecided = []
        for label, zp, k, opts in pending:
            ok = [opt for opt in opts
                  if all(cov.conflict(o, o + m) is None for _p, o, m in opt)]
            if not ok:
                raise AlignmentError(
                    "%s: %d bytes at a piece boundary match two places in the file, and "
                    "every way to split them collides with bytes another client received "
                    "(a byte served twice?)" % (_describe(label, zp), k))
            if len(ok) == 1:
                take(label, ok[0])
                progress = True
            else:
                undecided.append((label, zp, k, opts))
        if not progress and undecided:
            label, zp, k, opts = undecided.pop(0)
            ok = [opt for opt in opts
                  if all(cov.conflict(o, o + m) is None for _p, o, m in opt)]
            take(label, ok[-1])
        pending = undecided

    for label, pcs in placed.items():
        pcs.sort()
        pos = 0
        last_end = 0
        for p, o, m in pcs:
            assert p == pos, "internal: %s pieces do not tile the stream at %d" % (label, pos)
            pos += m
            if o < last_end:
                raise AlignmentError("%s: bytes from file offset %d come after bytes up to "
                                     "offset %d" % (_describe(label, p), o, last_end - 1))
            last_end = o + m
            if o < min_offset:
                raise AlignmentError(
                    "%s: received file offsets %d..%d, below %d (bytes the start-up test "
                    "should have discarded)" % (_describe(label, p), o,
                                                min(o + m, min_offset) - 1, min_offset))
            for fa, fb in forbidden:
                if o < fb and fa < o + m:
                    raise AlignmentError(
                        "%s: received file offsets %d..%d, inside the range %d..%d that "
                        "must never be served" % (_describe(label, p), max(o, fa),
                                                  min(o + m, fb) - 1, fa, fb - 1))
        assert pos == len(streams[label]), "internal: %s placed %d of %d bytes" % (
            label, pos, len(streams[label]))
        merged = []
        for p, o, m in pcs:
            if merged and merged[-1][0] + merged[-1][2] == p and merged[-1][1] + merged[-1][2] == o:
                merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + m)
            else:
                merged.append((p, o, m))
        placed[label] = merged
    return placed


# ---------------------------------------------------------------------------------------
# Several files (a relay fed by several file-fed upstreams)
#
# Each stream is first cut into stretches, each from one file: at stream position p, the
# longest match among every file's anchors (FileIndex.candidates) and its continuation
# (where that file's previous stretch in this stream ended) wins, a tie to the choice that
# lets the next stretch be longest; a stretch's last bytes (as many as can be) that begin
# another file's stretch reaching as far as the next one would (they matched by chance)
# are that file's, and so are its last bytes when the same file resumes right after them
# where they began (another file's bytes too few to anchor, such as its first);
# bytes matching nowhere (tiny pieces) go to the one file holding them, else with the
# next stretch. Then align_streams proves each file's shares of all streams (placing those
# bytes, increasing offsets, no file byte twice across all streams, no start-up bytes).


def _file_matches(s, p, files, nxt):
    """[(length, name, file offset)] of the matches starting at s[p], at or after the end
    of each file's previous stretch (nxt)."""
    found = []
    for name, index in files.items():
        offsets = index.candidates(s, p)
        if nxt[name] is not None:
            offsets = {o for o in offsets if o >= nxt[name]} | {nxt[name]}
        for o in offsets:
            m = _match_len(s, p, index.data, o)
            if m > 0:
                found.append((m, name, o))
    return found


def _longest(s, p, files, nxt, name=None, end=None):
    """Length of the longest match at s[p] (0 if none), with name's stretch ended at end."""
    if name is not None:
        nxt = dict(nxt, **{name: end})
    return max(_file_matches(s, p, files, nxt), default=(0,))[0]


def _split(s, files, label):
    """Cut s into stretches of one file each: [(stream_pos, name, length)]."""
    nxt = {name: None for name in files}
    out = []
    p = 0
    while p < len(s):
        found = _file_matches(s, p, files, nxt)
        if not found:  # a gap: to the one file holding it, else the next (or last) stretch's
            q = p + 1
            while q < len(s) and q - p <= MAX_GAP and _longest(s, q, files, nxt) < MIN_ANCHOR:
                q += 1
            if q - p > MAX_GAP or not (q < len(s) or out):
                raise AlignmentError("%s: bytes %s... are in none of the files %s"
                                     % (_describe(label, p), s[p:p + 16].hex(), sorted(files)))
            held = [n for n, x in files.items() if x.data.find(s[p:q], nxt[n] or 0) >= 0]
            after = max(_file_matches(s, q, files, nxt)) if q < len(s) else None
            if len(held) > 1 and after is not None and after[2] == nxt[after[1]]:
                # That file resumes after the gap where it stopped before: not its bytes.
                held = [n for n in held if n != after[1]] or held
            name = held[0] if len(held) == 1 else (
                after[1] if after is not None else out[-1][1])
            out.append((p, name, q - p))
            p = q
            continue
        ties = [x for x in found if x[0] == max(found)[0]]
        ties.sort(key=lambda x: _longest(s, p + x[0], files, nxt, x[1], x[2] + x[0]),
                  reverse=True)
        m, name, o = ties[0]
        reach = p + m + _longest(s, p + m, files, nxt, name, o + m)
        # The most bytes another file's stretch can take: each of them matched both files
        # by chance, and leaving one with this stretch would put its file's next offset
        # past where that file resumes. A stretch of the other file that ends where this
        # one does (the stream's end) is no reason to cut.
        cut = next((k for k in range(min(EDGE_SLACK, m - 1), 0, -1)
                    if any(x[1] != name and x[0] > k and p + m - k + x[0] >= reach
                           for x in _file_matches(s, p + m - k, files, nxt))), 0)
        stray = None if cut else _stray_tail(s, p, m, name, o, files, nxt, reach)
        if stray is not None:  # the tail is another file's, the same file resumes
            k, other, at = stray
            out.append((p, name, m - k))
            out.append((p + m - k, other, k))
            nxt[name] = o + m - k
            if at:
                nxt[other] += k
        else:
            out.append((p, name, m - cut))
            nxt[name] = o + m - cut
        p += m - cut
    return out


def _stray_tail(s, p, m, name, o, files, nxt, reach):
    """(k, file, whether they continue that file's previous stretch) if the last k <=
    EDGE_SLACK bytes of the stretch s[p:p+m] (file name from offset o) matched by chance:
    the same file resumes right after them where the shortened stretch ends, reaching past
    `reach`, and another file holds those k bytes at or after its previous stretch (anywhere
    if it has none in this stream yet, as when its first bytes are fewer than an anchor).
    None otherwise."""
    for k in range(1, min(EDGE_SLACK, m - 1) + 1):
        resume = _match_len(s, p + m, files[name].data, o + m - k)
        if resume < MIN_ANCHOR or p + m + resume <= reach:
            continue
        t = s[p + m - k:p + m]
        held = [n for n, x in files.items()
                if n != name and x.data.find(t, nxt[n] or 0) >= 0]
        if not held:
            return None  # the k bytes twice in a row: the alignment reports it
        at = [n for n in held if nxt[n] is not None and files[n].data.startswith(t, nxt[n])]
        return k, (at or held)[0], bool(at)
    return None


def align_streams_multi(files, streams, min_offset=0):
    """Check raw-mode delivery from several file sources. files: {name: FileIndex or the
    file's bytes}; streams: {label: bytes}. Every byte must come from exactly one file, no
    file byte may reach two clients (or one twice), each client's bytes from one file come
    at increasing offsets, none below min_offset. Returns {label: [(stream_pos, name,
    file_off, length)]} in stream order. Raises AlignmentError; a message about a share
    names it "<label> from <name>" and counts stream offsets within that share."""
    files = {n: f if isinstance(f, FileIndex) else FileIndex(f) for n, f in files.items()}
    cuts = {label: _split(s, files, label) for label, s in streams.items()}
    placed = {label: [] for label in streams}
    for name, index in files.items():
        spans = {}
        for label, s in streams.items():
            sp = [(p, m) for p, n, m in cuts[label] if n == name]
            if sp:
                spans["%s from %s" % (label, name)] = (label, s, sp)
        shares = {key: b"".join(s[p:p + m] for p, m in sp)
                  for key, (_label, s, sp) in spans.items()}
        sub = align_streams(index.data, shares, min_offset=min_offset, index=index)
        for key, pieces in sub.items():
            label, _s, sp = spans[key]
            starts, q = [], 0
            for _p, m in sp:
                starts.append(q)
                q += m
            for q, o, m in pieces:  # share offsets back to stream offsets
                while m > 0:
                    i = bisect.bisect_right(starts, q) - 1
                    p, ln = sp[i]
                    k = min(m, starts[i] + ln - q)
                    placed[label].append((p + q - starts[i], name, o, k))
                    q, o, m = q + k, o + k, m - k
    for pcs in placed.values():
        pcs.sort()
    return placed


def bytes_from(pieces, start=0, end=None):
    """{name: bytes} that one stream's pieces (from align_streams_multi) took from each
    file within stream offsets [start, end); a file not named gave none (Counter)."""
    out = collections.Counter()
    for p, name, _o, m in pieces:
        lo, hi = max(p, start), p + m if end is None else min(p + m, end)
        if hi > lo:
            out[name] += hi - lo
    return out


def coverage_summary(placed):
    """(lowest offset, highest offset + 1, bytes placed) over all clients."""
    lo, hi, total = None, 0, 0
    for pcs in placed.values():
        for _p, o, m in pcs:
            lo = o if lo is None else min(lo, o)
            hi = max(hi, o + m)
            total += m
    return lo, hi, total
