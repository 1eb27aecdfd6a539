"""Exact parameter and MAC counts of the blocks NAS spaces are built of, in integer arithmetic.

``register_jitable``: the sweep kernels call them for every candidate, and rfsweep.space.blocks calls the same
functions in Python to expand a block into the layers ``rfsweep analyze`` counts (the tests require the
two to agree exactly). Conventions (Once-for-All's, torchvision's):

* every conv inside a block has no bias and is followed by BatchNorm (2 x C parameters: scale, shift);
  the squeeze-and-excitation convs have biases and no BatchNorm;
* MBConv (MobileNetV2/V3 inverted residual): a 1x1 expansion to ``mid = make_divisible(round(cin x e), 8)``
  channels (left out when e = 1, where mid = cin), a k x k depthwise conv with the block's stride and
  dilation, squeeze-and-excitation on ``se_mid = make_divisible(mid // 4, 8)`` channels when on, a 1x1
  projection to cout; the input is added back when the stride is 1 and cin = cout;
* basic (ResNet): k x k conv with the stride, k x k conv, projection shortcut (1x1 conv with the
  stride + BN) when the stride is not 1 or cin != cout; bottleneck (ResNet v1.5: the stride in the
  k x k): 1x1 to ``mid = make_divisible(round(cout x e), 8)``, k x k, 1x1 to cout, the same shortcut;
* MACs: a conv's weights times its output map; a 1x1 conv on a pooled vector, its weights.

Expansion ratios are rationals ``e_num / e_den`` (0.25 = 1/4, 6 = 6/1), so nothing is rounded twice.
"""

from numba.extending import register_jitable

# block ops (the first three are the chain sweep's own op codes: kernels/layer_math.OP_*)
B_CONV, B_MAXPOOL, B_AVGPOOL, B_MBCONV, B_BASIC, B_BOTTLENECK, B_GLOBAL_POOL, B_LINEAR = range(8)


@register_jitable(_nrt=False)
def round_half_even(num, den):
    """Python's round(num / den) for integers, den > 0: halves go to the even neighbour."""
    q = num // den
    r = num - q * den
    twice = 2 * r
    if twice > den or (twice == den and q % 2 == 1):
        q += 1
    return q


@register_jitable(_nrt=False)
def make_divisible(v, divisor):
    """The channel rounding of MobileNet/Once-for-All: the nearest multiple of ``divisor`` (at least
    ``divisor``), one step more if that loses over 10 %."""
    new_v = (v + divisor // 2) // divisor * divisor
    if new_v < divisor:
        new_v = divisor
    if 10 * new_v < 9 * v:
        new_v += divisor
    return new_v


@register_jitable(_nrt=False)
def mbconv_mid(cin, e_num, e_den):
    """Channels inside an MBConv: the input's when e = 1, else make_divisible(round(cin x e), 8)."""
    if e_num == e_den:
        return cin
    return make_divisible(round_half_even(cin * e_num, e_den), 8)


@register_jitable(_nrt=False)
def se_mid(mid):
    """Channels of the squeeze-and-excitation bottleneck: make_divisible(mid // 4, 8)."""
    return make_divisible(mid // 4, 8)


@register_jitable(_nrt=False)
def bottleneck_mid(cout, e_num, e_den):
    """Channels inside a ResNet bottleneck: make_divisible(round(cout x e), 8) (e = 1/4: torchvision's)."""
    return make_divisible(round_half_even(cout * e_num, e_den), 8)


@register_jitable(_nrt=False)
def has_shortcut_conv(op, stride, cin, cout):
    """A ResNet block projects its input (1x1 conv with the stride, BN) unless the shapes already match."""
    return (op == B_BASIC or op == B_BOTTLENECK) and (stride != 1 or cin != cout)


@register_jitable(_nrt=False)
def residual(op, stride, cin, cout):
    """The block adds its input (or its projection) back: always for ResNet blocks, for an MBConv when
    the stride is 1 and the channels match."""
    if op == B_BASIC or op == B_BOTTLENECK:
        return True
    return op == B_MBCONV and stride == 1 and cin == cout


@register_jitable(_nrt=False)
def block_costs(op, k, s, e_num, e_den, se, bn, bias, cin, cout, n_in, n_out):
    """(params, MACs) of one block with stride ``s``, input size ``n_in`` and output size ``n_out``
    (square maps)."""
    a_in = n_in * n_in
    a_out = n_out * n_out
    if op == B_CONV:
        w = k * k * cin * cout
        return w + bias * cout + bn * 2 * cout, w * a_out
    if op == B_LINEAR:  # on a pooled vector
        w = cin * cout
        return w + bias * cout, w
    if op == B_MBCONV:
        mid = mbconv_mid(cin, e_num, e_den)
        params = k * k * mid + 2 * mid + mid * cout + 2 * cout
        macs = a_out * k * k * mid + a_out * mid * cout
        if e_num != e_den:
            params += cin * mid + 2 * mid
            macs += a_in * cin * mid
        if se:
            sm = se_mid(mid)
            params += mid * sm + sm + sm * mid + mid
            macs += 2 * mid * sm
        return params, macs
    if op == B_BASIC:
        params = k * k * cin * cout + 2 * cout + k * k * cout * cout + 2 * cout
        macs = a_out * k * k * cin * cout + a_out * k * k * cout * cout
    elif op == B_BOTTLENECK:
        mid = bottleneck_mid(cout, e_num, e_den)
        params = cin * mid + 2 * mid + k * k * mid * mid + 2 * mid + mid * cout + 2 * cout
        macs = a_in * cin * mid + a_out * k * k * mid * mid + a_out * mid * cout
    else:  # pools and the global pool have no parameters
        return 0, 0
    if has_shortcut_conv(op, s, cin, cout):
        params += cin * cout + 2 * cout
        macs += a_out * cin * cout
    return params, macs


@register_jitable(_nrt=False)
def block_peak(op, k, s, e_num, e_den, se, cin, cout, n_in, n_out, pooled):
    """Peak activation memory of one block, in elements, batch 1 (MCUNet, Lin et al. 2020): run layer by
    layer, a layer needs its input and its output alive at once, and a tensor a later layer still reads
    (a residual's block input, the trunk an SE gate scales) stays alive across the layers between.
    BatchNorm, activations, the SE gate's product and the residual add work in place. ``pooled``: the
    block acts on the pooled vector (a head's linear or 1x1 conv after the global pool). The maxima:

    * conv, pools: ``in + out``; global pool: ``in + cin``; linear (or any block on the pooled vector):
      ``cin + cout``;
    * mbconv (mid channels, keep = the block input when it is added back, else 0): expansion
      ``in + mid x n_in^2``; depthwise ``mid x (n_in^2 + n_out^2)`` (+ keep when expanded: without an
      expansion the block input is the depthwise input); SE ``mid x n_out^2 + mid + se_mid + keep``
      (trunk, squeezed vector, bottleneck vector); projection ``mid x n_out^2 + out + keep``;
    * basic: ``in + 2 out`` (the second conv's input and output with the block input kept; the
      projection shortcut, run after the branch, needs the same);
    * bottleneck (mid channels): ``in + mid x n_in^2``, ``mid x (n_in^2 + n_out^2) + in``,
      ``mid x n_out^2 + out + in``, and ``in + 2 out`` with a projection shortcut;

    where ``in = cin x n_in^2`` and ``out = cout x n_out^2``.
    """
    if pooled or op == B_LINEAR:
        return cin + cout
    a_in = n_in * n_in
    a_out = n_out * n_out
    x_in = a_in * cin
    x_out = a_out * cout
    if op == B_GLOBAL_POOL:
        return x_in + cin
    if op == B_MBCONV:
        mid = mbconv_mid(cin, e_num, e_den)
        keep = x_in if residual(op, s, cin, cout) else 0
        peak = mid * a_out + x_out + keep  # the projection
        if e_num != e_den:
            v = x_in + mid * a_in  # the expansion (its input is the block input)
            if v > peak:
                peak = v
            v = mid * (a_in + a_out) + keep
        else:
            v = mid * (a_in + a_out)  # the depthwise conv reads the block input itself
        if v > peak:
            peak = v
        if se:
            v = mid * a_out + mid + se_mid(mid) + keep
            if v > peak:
                peak = v
        return peak
    if op == B_BASIC:
        return x_in + 2 * x_out
    if op == B_BOTTLENECK:
        mid = bottleneck_mid(cout, e_num, e_den)
        peak = x_in + mid * a_in
        v = mid * (a_in + a_out) + x_in
        if v > peak:
            peak = v
        v = mid * a_out + x_out + x_in
        if v > peak:
            peak = v
        if has_shortcut_conv(op, s, cin, cout):
            v = x_in + 2 * x_out
            if v > peak:
                peak = v
        return peak
    return x_in + x_out  # conv, maxpool, avgpool
