;; Float32 kernels for the hot loops of Occam's host path, 4 lanes at a time (WebAssembly SIMD).
;; Pointers are byte offsets into the module's memory, 16-byte aligned; n is a count of floats.
;; Every lane does what the scalar JavaScript does, in the same order: the results are the same bits,
;; except where e^x is taken ($exp4 is within 2 ulp of it, not Math.exp's bits).
(module
  (memory (export "memory") 1)

  ;; dst[i] = dst[i] + src[i] for i < n.
  (func (export "add") (param $dst i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end4 i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $dst) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done4
      (loop $four
        (br_if $done4 (i32.ge_u (local.get $dst) (local.get $end4)))
        (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $dst)) (v128.load (local.get $src))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (br $four)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
        (f32.store (local.get $dst) (f32.add (f32.load (local.get $dst)) (f32.load (local.get $src))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (br $one))))

  ;; dst[i] = dst[i] · src[i] for i < n.
  (func (export "mul") (param $dst i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end4 i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $dst) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done4
      (loop $four
        (br_if $done4 (i32.ge_u (local.get $dst) (local.get $end4)))
        (v128.store (local.get $dst) (f32x4.mul (v128.load (local.get $dst)) (v128.load (local.get $src))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (br $four)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
        (f32.store (local.get $dst) (f32.mul (f32.load (local.get $dst)) (f32.load (local.get $src))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (br $one))))

  ;; Through a ReLU (and dropout noise, unless noise is 0): dz[i] = dy[i]·noise[i]·[y[i] > 0], and
  ;; sums[c] += the same product in double precision (f64 sums), c = i mod channels, rows in order.
  ;; A float32 product of two float32s is the double product rounded once, so dz matches JavaScript's.
  (func (export "relu_backward") (param $dz i32) (param $dy i32) (param $y i32) (param $noise i32)
    (param $n i32) (param $channels i32) (param $sums i32)
    (local $i i32) (local $c i32) (local $c4 i32) (local $at i32) (local $s i32)
    (local $DY v128) (local $ON v128) (local $P v128) (local $G v128) (local $HI v128)
    (local $one f32) (local $g f64)
    (local.set $c4 (i32.and (local.get $channels) (i32.const -4)))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $c (i32.const 0))
        (block $four_done
          (loop $four
            (br_if $four_done (i32.ge_u (local.get $c) (local.get $c4)))
            (local.set $at (i32.shl (i32.add (local.get $i) (local.get $c)) (i32.const 2)))
            (local.set $s (i32.add (local.get $sums) (i32.shl (local.get $c) (i32.const 3))))
            (local.set $DY (v128.load (i32.add (local.get $dy) (local.get $at))))
            (local.set $ON (f32x4.convert_i32x4_u
              (v128.and (f32x4.gt (v128.load (i32.add (local.get $y) (local.get $at))) (f32x4.splat (f32.const 0)))
                        (i32x4.splat (i32.const 1)))))
            ;; The exact double products dy·noise, two lanes at a time, then · [y > 0].
            (local.set $P (local.get $DY))
            (local.set $G (f64x2.promote_low_f32x4 (local.get $DY)))
            (local.set $HI (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $DY) (local.get $DY))))
            (if (local.get $noise)
              (then
                (local.set $P (v128.load (i32.add (local.get $noise) (local.get $at))))
                (local.set $G (f64x2.mul (local.get $G) (f64x2.promote_low_f32x4 (local.get $P))))
                (local.set $HI (f64x2.mul (local.get $HI)
                  (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $P) (local.get $P)))))
                (local.set $P (f32x4.mul (local.get $DY) (local.get $P)))))
            (v128.store (i32.add (local.get $dz) (local.get $at)) (f32x4.mul (local.get $P) (local.get $ON)))
            (local.set $G (f64x2.mul (local.get $G) (f64x2.promote_low_f32x4 (local.get $ON))))
            (local.set $HI (f64x2.mul (local.get $HI)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $ON) (local.get $ON)))))
            (v128.store (local.get $s) (f64x2.add (v128.load (local.get $s)) (local.get $G)))
            (v128.store offset=16 (local.get $s) (f64x2.add (v128.load offset=16 (local.get $s)) (local.get $HI)))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $four)))
        (block $one_done
          (loop $one
            (br_if $one_done (i32.ge_u (local.get $c) (local.get $channels)))
            (local.set $at (i32.shl (i32.add (local.get $i) (local.get $c)) (i32.const 2)))
            (local.set $s (i32.add (local.get $sums) (i32.shl (local.get $c) (i32.const 3))))
            (local.set $one (select (f32.const 1) (f32.const 0) (f32.gt (f32.load (i32.add (local.get $y) (local.get $at))) (f32.const 0))))
            (local.set $g (f64.promote_f32 (f32.load (i32.add (local.get $dy) (local.get $at)))))
            (if (local.get $noise)
              (then (local.set $g (f64.mul (local.get $g) (f64.promote_f32 (f32.load (i32.add (local.get $noise) (local.get $at))))))))
            (local.set $g (f64.mul (local.get $g) (f64.promote_f32 (local.get $one))))
            (f32.store (i32.add (local.get $dz) (local.get $at)) (f32.demote_f64 (local.get $g)))
            (f64.store (local.get $s) (f64.add (f64.load (local.get $s)) (local.get $g)))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $one)))
        (local.set $i (i32.add (local.get $i) (local.get $channels)))
        (br $rows))))

  ;; Dropout noise, one row per seed: each row's own mulberry32 stream (training/rng.ts's Rng) gives
  ;; 32 bits per two values, low half first; a value is keep where its 16 bits are >= threshold, else 0.
  ;; Four rows at a time, one per lane (a stream is a chain of dependent steps: lanes run four at once).
  (func (export "dropout_noise") (param $out i32) (param $seeds i32) (param $rows i32) (param $width i32)
    (param $threshold i32) (param $keep f32)
    (local $row i32) (local $col i32) (local $state i32) (local $t i32) (local $stride i32) (local $at i32)
    (local $S v128) (local $T v128) (local $LO v128) (local $HI v128) (local $KEEP v128) (local $THR v128)
    (local.set $stride (i32.shl (local.get $width) (i32.const 2)))
    (local.set $KEEP (f32x4.splat (local.get $keep)))
    (local.set $THR (i32x4.splat (local.get $threshold)))
    (block $groups_done
      (loop $each_group
        (br_if $groups_done (i32.gt_u (i32.add (local.get $row) (i32.const 4)) (local.get $rows)))
        (local.set $S (v128.load (i32.add (local.get $seeds) (i32.shl (local.get $row) (i32.const 2)))))
        (local.set $at (i32.add (local.get $out) (i32.mul (local.get $row) (local.get $stride))))
        (local.set $col (i32.const 0))
        (block $cols_done
          (loop $each_pair
            (br_if $cols_done (i32.ge_u (local.get $col) (local.get $width)))
            (local.set $S (i32x4.add (local.get $S) (i32x4.splat (i32.const 0x6d2b79f5))))
            (local.set $T (i32x4.mul (v128.xor (local.get $S) (i32x4.shr_u (local.get $S) (i32.const 15)))
                                     (v128.or (local.get $S) (i32x4.splat (i32.const 1)))))
            (local.set $T (v128.xor (local.get $T)
              (i32x4.add (local.get $T) (i32x4.mul (v128.xor (local.get $T) (i32x4.shr_u (local.get $T) (i32.const 7)))
                                                   (v128.or (local.get $T) (i32x4.splat (i32.const 61)))))))
            (local.set $T (v128.xor (local.get $T) (i32x4.shr_u (local.get $T) (i32.const 14))))
            (local.set $LO (v128.and (local.get $KEEP)
              (i32x4.ge_u (v128.and (local.get $T) (i32x4.splat (i32.const 0xffff))) (local.get $THR))))
            (local.set $HI (v128.and (local.get $KEEP) (i32x4.ge_u (i32x4.shr_u (local.get $T) (i32.const 16)) (local.get $THR))))
            (f32.store (local.get $at) (f32x4.extract_lane 0 (local.get $LO)))
            (f32.store (i32.add (local.get $at) (local.get $stride)) (f32x4.extract_lane 1 (local.get $LO)))
            (f32.store (i32.add (local.get $at) (i32.shl (local.get $stride) (i32.const 1))) (f32x4.extract_lane 2 (local.get $LO)))
            (f32.store (i32.add (local.get $at) (i32.mul (local.get $stride) (i32.const 3))) (f32x4.extract_lane 3 (local.get $LO)))
            (if (i32.lt_u (i32.add (local.get $col) (i32.const 1)) (local.get $width))
              (then
                (f32.store offset=4 (local.get $at) (f32x4.extract_lane 0 (local.get $HI)))
                (f32.store offset=4 (i32.add (local.get $at) (local.get $stride)) (f32x4.extract_lane 1 (local.get $HI)))
                (f32.store offset=4 (i32.add (local.get $at) (i32.shl (local.get $stride) (i32.const 1))) (f32x4.extract_lane 2 (local.get $HI)))
                (f32.store offset=4 (i32.add (local.get $at) (i32.mul (local.get $stride) (i32.const 3))) (f32x4.extract_lane 3 (local.get $HI)))))
            (local.set $at (i32.add (local.get $at) (i32.const 8)))
            (local.set $col (i32.add (local.get $col) (i32.const 2)))
            (br $each_pair)))
        (local.set $row (i32.add (local.get $row) (i32.const 4)))
        (br $each_group)))
    ;; The last rows (fewer than four), one at a time.
    (local.set $out (i32.add (local.get $out) (i32.mul (local.get $row) (local.get $stride))))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $rows)))
        (local.set $state (i32.load (i32.add (local.get $seeds) (i32.shl (local.get $row) (i32.const 2)))))
        (local.set $col (i32.const 0))
        (block $cols_done
          (loop $each_pair
            (br_if $cols_done (i32.ge_u (local.get $col) (local.get $width)))
            (local.set $state (i32.add (local.get $state) (i32.const 0x6d2b79f5)))
            (local.set $t (i32.mul (i32.xor (local.get $state) (i32.shr_u (local.get $state) (i32.const 15)))
                                   (i32.or (local.get $state) (i32.const 1))))
            (local.set $t (i32.xor (local.get $t)
              (i32.add (local.get $t) (i32.mul (i32.xor (local.get $t) (i32.shr_u (local.get $t) (i32.const 7)))
                                               (i32.or (local.get $t) (i32.const 61))))))
            (local.set $t (i32.xor (local.get $t) (i32.shr_u (local.get $t) (i32.const 14))))
            (f32.store (local.get $out)
              (select (local.get $keep) (f32.const 0) (i32.ge_u (i32.and (local.get $t) (i32.const 0xffff)) (local.get $threshold))))
            (if (i32.lt_u (i32.add (local.get $col) (i32.const 1)) (local.get $width))
              (then
                (f32.store offset=4 (local.get $out)
                  (select (local.get $keep) (f32.const 0) (i32.ge_u (i32.shr_u (local.get $t) (i32.const 16)) (local.get $threshold))))))
            (local.set $out (i32.add (local.get $out) (select (i32.const 8) (i32.const 4)
              (i32.lt_u (i32.add (local.get $col) (i32.const 1)) (local.get $width)))))
            (local.set $col (i32.add (local.get $col) (i32.const 2)))
            (br $each_pair)))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $each_row))))

  ;; exp4's constants as globals: TurboFan loads each in one instruction, where it rebuilds a
  ;; splat constant in three on every use.
  (global $exp_high v128 (v128.const f32x4 88.3762626647949 88.3762626647949 88.3762626647949 88.3762626647949))
  (global $exp_low v128 (v128.const f32x4 -88.3762626647949 -88.3762626647949 -88.3762626647949 -88.3762626647949))
  (global $log2_e v128 (v128.const f32x4 1.44269504088896341 1.44269504088896341 1.44269504088896341 1.44269504088896341))
  (global $exp_half v128 (v128.const f32x4 0.5 0.5 0.5 0.5))
  (global $ln2_high v128 (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375))
  (global $ln2_low v128 (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))
  (global $exp_p0 v128 (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
  (global $exp_p1 v128 (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3))
  (global $exp_p2 v128 (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3))
  (global $exp_p3 v128 (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2))
  (global $exp_p4 v128 (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1))
  (global $exp_p5 v128 (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1))
  (global $exp_one v128 (v128.const f32x4 1 1 1 1))
  ;; 2^23 + 127: added to an integral k in [−127, 128], its low mantissa bits are k + 127 exactly.
  (global $exponent_bias v128 (v128.const f32x4 8388735 8388735 8388735 8388735))

  ;; e^x in float32 for four lanes (Cephes' expf: a degree-5 polynomial on x − k·ln 2, times 2^k),
  ;; within 2 ulp over the range; beyond ±88.38 it saturates (0 or about 2.4e38), NaN stays NaN.
  (func $exp4 (param $x v128) (result v128)
    (local $k v128) (local $r v128) (local $p v128)
    ;; pmin/pmax: one instruction each (min/max take six, for NaN and −0), and a NaN stays NaN.
    (local.set $x (f32x4.pmax (f32x4.pmin (local.get $x) (global.get $exp_high)) (global.get $exp_low)))
    (local.set $k (f32x4.floor (f32x4.add (f32x4.mul (local.get $x) (global.get $log2_e)) (global.get $exp_half))))
    (local.set $r (f32x4.sub (f32x4.sub (local.get $x) (f32x4.mul (local.get $k) (global.get $ln2_high)))
                             (f32x4.mul (local.get $k) (global.get $ln2_low))))
    (local.set $p (f32x4.add (f32x4.mul (global.get $exp_p0) (local.get $r)) (global.get $exp_p1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (global.get $exp_p2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (global.get $exp_p3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (global.get $exp_p4)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (global.get $exp_p5)))
    (local.set $p (f32x4.add (f32x4.add (f32x4.mul (local.get $p) (f32x4.mul (local.get $r) (local.get $r))) (local.get $r))
                             (global.get $exp_one)))
    ;; 2^k from the exponent bits; k ≥ −127 here, and k = −127 gives 0 (e^x then is below float32's normals).
    (f32x4.mul (local.get $p)
      (i32x4.shl (f32x4.add (local.get $k) (global.get $exponent_bias)) (i32.const 23))))

  ;; Rows of $width values whose valid positions are the first (r mod $steps) + 1 (causal: row r is
  ;; query r mod $steps), or all $width when $steps is 0. Per row: $maxes[r] = max of $scale·x and
  ;; $sums[r] = Σ e^($scale·x − max) over the valid positions (float32 lanes; a row's last four may
  ;; read past it, into memory the caller keeps for that).
  (func (export "row_max_sum") (param $x i32) (param $maxes i32) (param $sums i32) (param $rows i32)
    (param $width i32) (param $steps i32) (param $scale f32)
    (local $r i32) (local $c i32) (local $valid i32) (local $at i32) (local $v v128) (local $keep v128)
    (local $m v128) (local $s v128) (local $max f32)
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $valid (select (i32.add (i32.rem_u (local.get $r) (select (local.get $steps) (i32.const 1) (local.get $steps))) (i32.const 1))
          (local.get $width) (local.get $steps)))
        (local.set $at (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $width)) (i32.const 2))))
        (local.set $m (f32x4.splat (f32.const -inf)))
        (local.set $c (i32.const 0))
        (block $max_done
          (loop $max
            (br_if $max_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (local.set $v (f32x4.mul (v128.load (i32.add (local.get $at) (i32.shl (local.get $c) (i32.const 2)))) (f32x4.splat (local.get $scale))))
            (local.set $m (f32x4.max (local.get $m) (v128.bitselect (local.get $v) (f32x4.splat (f32.const -inf)) (local.get $keep))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $max)))
        (local.set $max (f32.max (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
                                 (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
        (local.set $m (f32x4.splat (local.get $max)))
        (local.set $s (f32x4.splat (f32.const 0)))
        (local.set $c (i32.const 0))
        (block $sum_done
          (loop $sum
            (br_if $sum_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (local.set $v (f32x4.mul (v128.load (i32.add (local.get $at) (i32.shl (local.get $c) (i32.const 2)))) (f32x4.splat (local.get $scale))))
            (local.set $s (f32x4.add (local.get $s)
              (v128.and (call $exp4 (f32x4.sub (local.get $v) (local.get $m))) (local.get $keep))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $sum)))
        (f32.store (i32.add (local.get $maxes) (i32.shl (local.get $r) (i32.const 2))) (local.get $max))
        (f32.store (i32.add (local.get $sums) (i32.shl (local.get $r) (i32.const 2)))
          (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s)) (f32x4.extract_lane 1 (local.get $s)))
                   (f32.add (f32x4.extract_lane 2 (local.get $s)) (f32x4.extract_lane 3 (local.get $s)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row))))

  ;; out = $factor·e^($scale·x − $shifts[r]) at each row's valid positions (as row_max_sum's), 0 at
  ;; the rest. Rows go in order: a row's last four may write past it, and the next row writes after.
  (func (export "exp_shifted") (param $x i32) (param $shifts i32) (param $out i32) (param $rows i32)
    (param $width i32) (param $steps i32) (param $scale f32) (param $factor f32)
    (local $r i32) (local $c i32) (local $valid i32) (local $row i32) (local $keep v128) (local $shift v128)
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $valid (select (i32.add (i32.rem_u (local.get $r) (select (local.get $steps) (i32.const 1) (local.get $steps))) (i32.const 1))
          (local.get $width) (local.get $steps)))
        (local.set $row (i32.shl (i32.mul (local.get $r) (local.get $width)) (i32.const 2)))
        (local.set $shift (f32x4.splat (f32.load (i32.add (local.get $shifts) (i32.shl (local.get $r) (i32.const 2))))))
        (local.set $c (i32.const 0))
        (block $done
          (loop $four
            (br_if $done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (v128.store (i32.add (i32.add (local.get $out) (local.get $row)) (i32.shl (local.get $c) (i32.const 2)))
              (v128.and (local.get $keep) (f32x4.mul (f32x4.splat (local.get $factor)) (call $exp4 (f32x4.sub
                (f32x4.mul (v128.load (i32.add (i32.add (local.get $x) (local.get $row)) (i32.shl (local.get $c) (i32.const 2)))) (f32x4.splat (local.get $scale)))
                (local.get $shift))))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $four)))
        ;; The masked positions past the last four written.
        (if (i32.lt_u (local.get $c) (local.get $width))
          (then (memory.fill (i32.add (i32.add (local.get $out) (local.get $row)) (i32.shl (local.get $c) (i32.const 2)))
                  (i32.const 0) (i32.shl (i32.sub (local.get $width) (local.get $c)) (i32.const 2)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row))))

  ;; softmax($scale·x) over each row's valid positions (as row_max_sum's), 0 at the rest, with one
  ;; exp per value: e^($scale·x − max) is stored and summed, then scaled by 1/sum. Rows go in
  ;; order: a row's last four may write past it, and the next row writes after ($out is not $x).
  (func (export "softmax") (param $x i32) (param $out i32) (param $rows i32) (param $width i32) (param $steps i32)
    (param $scale f32)
    (local $r i32) (local $c i32) (local $valid i32) (local $at i32) (local $to i32) (local $v v128)
    (local $keep v128) (local $m v128) (local $s v128) (local $e v128) (local $p i32)
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $valid (select (i32.add (i32.rem_u (local.get $r) (select (local.get $steps) (i32.const 1) (local.get $steps))) (i32.const 1))
          (local.get $width) (local.get $steps)))
        (local.set $at (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $width)) (i32.const 2))))
        (local.set $to (i32.add (local.get $out) (i32.shl (i32.mul (local.get $r) (local.get $width)) (i32.const 2))))
        (local.set $m (f32x4.splat (f32.const -inf)))
        (local.set $c (i32.const 0))
        (block $max_done
          (loop $max
            (br_if $max_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (local.set $v (f32x4.mul (v128.load (i32.add (local.get $at) (i32.shl (local.get $c) (i32.const 2)))) (f32x4.splat (local.get $scale))))
            (local.set $m (f32x4.max (local.get $m) (v128.bitselect (local.get $v) (f32x4.splat (f32.const -inf)) (local.get $keep))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $max)))
        (local.set $m (f32x4.splat (f32.max (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
                                            (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m))))))
        (local.set $s (f32x4.splat (f32.const 0)))
        (local.set $c (i32.const 0))
        (block $exp_done
          (loop $exp
            (br_if $exp_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (local.set $v (f32x4.mul (v128.load (i32.add (local.get $at) (i32.shl (local.get $c) (i32.const 2)))) (f32x4.splat (local.get $scale))))
            (local.set $e (v128.and (call $exp4 (f32x4.sub (local.get $v) (local.get $m))) (local.get $keep)))
            (v128.store (i32.add (local.get $to) (i32.shl (local.get $c) (i32.const 2))) (local.get $e))
            (local.set $s (f32x4.add (local.get $s) (local.get $e)))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $exp)))
        (local.set $s (f32x4.splat (f32.div (f32.const 1)
          (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s)) (f32x4.extract_lane 1 (local.get $s)))
                   (f32.add (f32x4.extract_lane 2 (local.get $s)) (f32x4.extract_lane 3 (local.get $s)))))))
        (local.set $c (i32.const 0))
        (block $scale_done
          (loop $four
            (br_if $scale_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $p (i32.add (local.get $to) (i32.shl (local.get $c) (i32.const 2))))
            (v128.store (local.get $p) (f32x4.mul (v128.load (local.get $p)) (local.get $s)))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $four)))
        ;; The masked positions past the last four written (rows go in order: the next row writes after).
        (if (i32.lt_u (local.get $c) (local.get $width))
          (then (memory.fill (i32.add (local.get $to) (i32.shl (local.get $c) (i32.const 2)))
                  (i32.const 0) (i32.shl (i32.sub (local.get $width) (local.get $c)) (i32.const 2)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row))))

  ;; The causal softmax's gradient, rows as row_max_sum's with $steps > 0: g = dy·noise (noise when
  ;; $hasNoise), out = $scale·y·(g − Σ g·y) at the valid positions, 0 at the rest; the sum in float32 lanes.
  (func (export "softmax_backward") (param $y i32) (param $dy i32) (param $noise i32) (param $out i32)
    (param $rows i32) (param $steps i32) (param $scale f32) (param $hasNoise i32)
    (local $r i32) (local $c i32) (local $valid i32) (local $at i32) (local $keep v128) (local $g v128)
    (local $sum v128) (local $dot v128)
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $valid (i32.add (i32.rem_u (local.get $r) (local.get $steps)) (i32.const 1)))
        (local.set $sum (f32x4.splat (f32.const 0)))
        (local.set $c (i32.const 0))
        (block $dot_done
          (loop $four
            (br_if $dot_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $at (i32.shl (i32.add (i32.mul (local.get $r) (local.get $steps)) (local.get $c)) (i32.const 2)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (local.set $g (v128.load (i32.add (local.get $dy) (local.get $at))))
            (if (local.get $hasNoise) (then (local.set $g (f32x4.mul (local.get $g) (v128.load (i32.add (local.get $noise) (local.get $at)))))))
            (local.set $sum (f32x4.add (local.get $sum)
              (v128.and (local.get $keep) (f32x4.mul (local.get $g) (v128.load (i32.add (local.get $y) (local.get $at)))))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $four)))
        (local.set $dot (f32x4.splat (f32.add (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
                                              (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum))))))
        (local.set $c (i32.const 0))
        (block $out_done
          (loop $four
            (br_if $out_done (i32.ge_u (local.get $c) (local.get $valid)))
            (local.set $at (i32.shl (i32.add (i32.mul (local.get $r) (local.get $steps)) (local.get $c)) (i32.const 2)))
            (local.set $keep (i32x4.lt_s (i32x4.add (i32x4.splat (local.get $c)) (v128.const i32x4 0 1 2 3)) (i32x4.splat (local.get $valid))))
            (local.set $g (v128.load (i32.add (local.get $dy) (local.get $at))))
            (if (local.get $hasNoise) (then (local.set $g (f32x4.mul (local.get $g) (v128.load (i32.add (local.get $noise) (local.get $at)))))))
            (v128.store (i32.add (local.get $out) (local.get $at))
              (v128.and (local.get $keep) (f32x4.mul (f32x4.mul (f32x4.splat (local.get $scale)) (v128.load (i32.add (local.get $y) (local.get $at))))
                                                     (f32x4.sub (local.get $g) (local.get $dot)))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $four)))
        (if (i32.lt_u (local.get $c) (local.get $steps))
          (then (memory.fill (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $steps)) (local.get $c)) (i32.const 2)))
                  (i32.const 0) (i32.shl (i32.sub (local.get $steps) (local.get $c)) (i32.const 2)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row))))

  ;; GELU's tanh form as x·σ(2u), u = √(2/π)·(x + 0.044715·x³): values[i], and slopes[i], its
  ;; derivative σ + x·σ·(1 − σ)·2√(2/π)·(1 + 3·0.044715·x²) with σ = σ(2u), for the backward pass.
  (func (export "gelu") (param $x i32) (param $values i32) (param $slopes i32) (param $n i32)
    (local $end i32) (local $v v128) (local $gate v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $four
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $gate (f32x4.div (f32x4.splat (f32.const 1))
          (f32x4.add (f32x4.splat (f32.const 1))
            (call $exp4 (f32x4.mul (f32x4.mul (f32x4.splat (f32.const -1.5957691216057308)) (local.get $v))
              (f32x4.add (f32x4.splat (f32.const 1)) (f32x4.mul (f32x4.splat (f32.const 0.044715)) (f32x4.mul (local.get $v) (local.get $v)))))))))
        (v128.store (local.get $values) (f32x4.mul (local.get $v) (local.get $gate)))
        (v128.store (local.get $slopes)
          (f32x4.add (local.get $gate)
            (f32x4.mul (f32x4.mul (f32x4.mul (local.get $v) (local.get $gate)) (f32x4.sub (f32x4.splat (f32.const 1)) (local.get $gate)))
              (f32x4.mul (f32x4.splat (f32.const 1.5957691216057308))
                (f32x4.add (f32x4.splat (f32.const 1)) (f32x4.mul (f32x4.splat (f32.const 0.134145)) (f32x4.mul (local.get $v) (local.get $v))))))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $values (i32.add (local.get $values) (i32.const 16)))
        (local.set $slopes (i32.add (local.get $slopes) (i32.const 16)))
        (br $four))))

  ;; LayerNorm over rows of $width (a multiple of 4): mean and variance summed in double precision,
  ;; normalized = (x − mean)·(1/√(var + ε)) and values = normalized·gain in float32; 1/σ per row kept.
  (func (export "layer_norm") (param $x i32) (param $gain i32) (param $bias i32) (param $values i32) (param $normalized i32)
    (param $inverseStd i32) (param $rows i32) (param $width i32) (param $epsilon f64)
    (local $r i32) (local $c i32) (local $at i32) (local $bytes i32) (local $v v128) (local $n v128)
    (local $lo v128) (local $hi v128) (local $d v128) (local $mean f64) (local $inverse f64) (local $M v128) (local $I v128)
    (local.set $bytes (i32.shl (local.get $width) (i32.const 2)))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $lo (f64x2.splat (f64.const 0)))
        (local.set $hi (f64x2.splat (f64.const 0)))
        (local.set $c (i32.const 0))
        (block $sum_done
          (loop $sum
            (br_if $sum_done (i32.ge_u (local.get $c) (local.get $bytes)))
            (local.set $v (v128.load (i32.add (local.get $x) (local.get $c))))
            (local.set $lo (f64x2.add (local.get $lo) (f64x2.promote_low_f32x4 (local.get $v))))
            (local.set $hi (f64x2.add (local.get $hi) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $sum)))
        (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
        (local.set $mean (f64.div (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo)))
                                  (f64.convert_i32_u (local.get $width))))
        (local.set $M (f64x2.splat (local.get $mean)))
        (local.set $lo (f64x2.splat (f64.const 0)))
        (local.set $hi (f64x2.splat (f64.const 0)))
        (local.set $c (i32.const 0))
        (block $squares_done
          (loop $squares
            (br_if $squares_done (i32.ge_u (local.get $c) (local.get $bytes)))
            (local.set $v (v128.load (i32.add (local.get $x) (local.get $c))))
            (local.set $d (f64x2.sub (f64x2.promote_low_f32x4 (local.get $v)) (local.get $M)))
            (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $d) (local.get $d))))
            (local.set $d (f64x2.sub (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (local.get $M)))
            (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $d) (local.get $d))))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $squares)))
        (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
        (local.set $inverse (f64.div (f64.const 1) (f64.sqrt (f64.add
          (f64.div (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo))) (f64.convert_i32_u (local.get $width)))
          (local.get $epsilon)))))
        (f32.store (local.get $inverseStd) (f32.demote_f64 (local.get $inverse)))
        (local.set $M (f32x4.splat (f32.demote_f64 (local.get $mean))))
        (local.set $I (f32x4.splat (f32.demote_f64 (local.get $inverse))))
        (local.set $c (i32.const 0))
        (block $out_done
          (loop $out
            (br_if $out_done (i32.ge_u (local.get $c) (local.get $bytes)))
            (local.set $n (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $c))) (local.get $M)) (local.get $I)))
            (v128.store (i32.add (local.get $normalized) (local.get $c)) (local.get $n))
            (v128.store (i32.add (local.get $values) (local.get $c))
              (f32x4.add (f32x4.mul (local.get $n) (v128.load (i32.add (local.get $gain) (local.get $c)))) (v128.load (i32.add (local.get $bias) (local.get $c)))))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $out)))
        (local.set $x (i32.add (local.get $x) (local.get $bytes)))
        (local.set $values (i32.add (local.get $values) (local.get $bytes)))
        (local.set $normalized (i32.add (local.get $normalized) (local.get $bytes)))
        (local.set $inverseStd (i32.add (local.get $inverseStd) (i32.const 4)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row))))

  ;; LayerNorm's gradient: dx = (g·dy − mean(g·dy) − x̂·mean(g·dy·x̂))·(1/σ), the means in double
  ;; precision; dGain[c] += Σ_rows dy·x̂ and dBias[c] += Σ_rows dy in double (f64 per channel, zeroed by the caller).
  (func (export "layer_norm_backward") (param $dy i32) (param $normalized i32) (param $inverseStd i32) (param $gain i32)
    (param $dx i32) (param $dGain i32) (param $dBias i32) (param $rows i32) (param $width i32)
    (local $r i32) (local $c i32) (local $bytes i32) (local $at i32) (local $g v128) (local $n v128) (local $s v128) (local $p v128)
    (local $alo v128) (local $ahi v128) (local $blo v128) (local $bhi v128) (local $A v128) (local $B v128) (local $I v128)
    (local.set $bytes (i32.shl (local.get $width) (i32.const 2)))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $alo (f64x2.splat (f64.const 0)))
        (local.set $ahi (f64x2.splat (f64.const 0)))
        (local.set $blo (f64x2.splat (f64.const 0)))
        (local.set $bhi (f64x2.splat (f64.const 0)))
        (local.set $c (i32.const 0))
        (block $sums_done
          (loop $sums
            (br_if $sums_done (i32.ge_u (local.get $c) (local.get $bytes)))
            (local.set $g (v128.load (i32.add (local.get $dy) (local.get $c))))
            (local.set $n (v128.load (i32.add (local.get $normalized) (local.get $c))))
            (local.set $s (f32x4.mul (local.get $g) (v128.load (i32.add (local.get $gain) (local.get $c)))))
            (local.set $p (f32x4.mul (local.get $s) (local.get $n)))
            (local.set $alo (f64x2.add (local.get $alo) (f64x2.promote_low_f32x4 (local.get $s))))
            (local.set $ahi (f64x2.add (local.get $ahi) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s)))))
            (local.set $blo (f64x2.add (local.get $blo) (f64x2.promote_low_f32x4 (local.get $p))))
            (local.set $bhi (f64x2.add (local.get $bhi) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $p) (local.get $p)))))
            ;; dGain: Σ dy·x̂ per channel, the products exact in double.
            (local.set $at (i32.add (local.get $dGain) (i32.shl (local.get $c) (i32.const 1))))
            (v128.store (local.get $at) (f64x2.add (v128.load (local.get $at))
              (f64x2.mul (f64x2.promote_low_f32x4 (local.get $g)) (f64x2.promote_low_f32x4 (local.get $n)))))
            (v128.store offset=16 (local.get $at) (f64x2.add (v128.load offset=16 (local.get $at))
              (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $g) (local.get $g)))
                         (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $n) (local.get $n))))))
            (local.set $at (i32.add (local.get $dBias) (i32.shl (local.get $c) (i32.const 1))))
            (v128.store (local.get $at) (f64x2.add (v128.load (local.get $at)) (f64x2.promote_low_f32x4 (local.get $g))))
            (v128.store offset=16 (local.get $at) (f64x2.add (v128.load offset=16 (local.get $at))
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $g) (local.get $g)))))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $sums)))
        (local.set $alo (f64x2.add (local.get $alo) (local.get $ahi)))
        (local.set $blo (f64x2.add (local.get $blo) (local.get $bhi)))
        (local.set $A (f32x4.splat (f32.demote_f64 (f64.div (f64.add (f64x2.extract_lane 0 (local.get $alo)) (f64x2.extract_lane 1 (local.get $alo)))
                                                           (f64.convert_i32_u (local.get $width))))))
        (local.set $B (f32x4.splat (f32.demote_f64 (f64.div (f64.add (f64x2.extract_lane 0 (local.get $blo)) (f64x2.extract_lane 1 (local.get $blo)))
                                                           (f64.convert_i32_u (local.get $width))))))
        (local.set $I (f32x4.splat (f32.load (local.get $inverseStd))))
        (local.set $c (i32.const 0))
        (block $dx_done
          (loop $each_dx
            (br_if $dx_done (i32.ge_u (local.get $c) (local.get $bytes)))
            (v128.store (i32.add (local.get $dx) (local.get $c))
              (f32x4.mul (f32x4.sub (f32x4.sub (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $c))) (v128.load (i32.add (local.get $gain) (local.get $c))))
                                               (local.get $A))
                                    (f32x4.mul (v128.load (i32.add (local.get $normalized) (local.get $c))) (local.get $B)))
                         (local.get $I)))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $each_dx)))
        (local.set $dy (i32.add (local.get $dy) (local.get $bytes)))
        (local.set $normalized (i32.add (local.get $normalized) (local.get $bytes)))
        (local.set $dx (i32.add (local.get $dx) (local.get $bytes)))
        (local.set $inverseStd (i32.add (local.get $inverseStd) (i32.const 4)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row))))

  ;; Adam(W) over n weights: m = b1*m + gm*g; v = b2*v + (gv*g)*g; w = w*keep - (step*m)/(sqrt(v) + eps).
  ;; float32 throughout, each operation rounded once, in this order (adamReference in training/adam.ts).
  (func (export "adam") (param $w i32) (param $m i32) (param $v i32) (param $g i32) (param $n i32)
    (param $b1 f32) (param $b2 f32) (param $gm f32) (param $gv f32) (param $step f32) (param $keep f32) (param $eps f32)
    (local $end i32) (local $end4 i32) (local $G v128) (local $M v128) (local $V v128)
    (local $B1 v128) (local $B2 v128) (local $GM v128) (local $GV v128) (local $S v128) (local $K v128) (local $E v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $B1 (f32x4.splat (local.get $b1)))
    (local.set $B2 (f32x4.splat (local.get $b2)))
    (local.set $GM (f32x4.splat (local.get $gm)))
    (local.set $GV (f32x4.splat (local.get $gv)))
    (local.set $S (f32x4.splat (local.get $step)))
    (local.set $K (f32x4.splat (local.get $keep)))
    (local.set $E (f32x4.splat (local.get $eps)))
    (local.set $end (i32.add (local.get $w) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done4
      (loop $four
        (br_if $done4 (i32.ge_u (local.get $w) (local.get $end4)))
        (local.set $G (v128.load (local.get $g)))
        (local.set $M (f32x4.add (f32x4.mul (local.get $B1) (v128.load (local.get $m))) (f32x4.mul (local.get $GM) (local.get $G))))
        (local.set $V (f32x4.add (f32x4.mul (local.get $B2) (v128.load (local.get $v)))
                                 (f32x4.mul (f32x4.mul (local.get $GV) (local.get $G)) (local.get $G))))
        (v128.store (local.get $m) (local.get $M))
        (v128.store (local.get $v) (local.get $V))
        (v128.store (local.get $w)
          (f32x4.sub (f32x4.mul (v128.load (local.get $w)) (local.get $K))
                     (f32x4.div (f32x4.mul (local.get $S) (local.get $M)) (f32x4.add (f32x4.sqrt (local.get $V)) (local.get $E)))))
        (local.set $w (i32.add (local.get $w) (i32.const 16)))
        (local.set $m (i32.add (local.get $m) (i32.const 16)))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (br $four)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $gs (f32.load (local.get $g)))
        (local.set $ms (f32.add (f32.mul (local.get $b1) (f32.load (local.get $m))) (f32.mul (local.get $gm) (local.get $gs))))
        (local.set $vs (f32.add (f32.mul (local.get $b2) (f32.load (local.get $v)))
                                (f32.mul (f32.mul (local.get $gv) (local.get $gs)) (local.get $gs))))
        (f32.store (local.get $m) (local.get $ms))
        (f32.store (local.get $v) (local.get $vs))
        (f32.store (local.get $w)
          (f32.sub (f32.mul (f32.load (local.get $w)) (local.get $keep))
                   (f32.div (f32.mul (local.get $step) (local.get $ms)) (f32.add (f32.sqrt (local.get $vs)) (local.get $eps)))))
        (local.set $w (i32.add (local.get $w) (i32.const 4)))
        (local.set $m (i32.add (local.get $m) (i32.const 4)))
        (local.set $v (i32.add (local.get $v) (i32.const 4)))
        (local.set $g (i32.add (local.get $g) (i32.const 4)))
        (br $one))))

  ;; The same update at n kept positions, over compacted moments: g[k], m[k] and v[k] belong to weight
  ;; pos[k] (u32 indices). Only the weights are gathered and scattered, four lanes at a time.
  (func (export "adam_masked") (param $w i32) (param $m i32) (param $v i32) (param $g i32) (param $pos i32) (param $n i32)
    (param $b1 f32) (param $b2 f32) (param $gm f32) (param $gv f32) (param $step f32) (param $keep f32) (param $eps f32)
    (local $end i32) (local $end4 i32) (local $at i32) (local $a0 i32) (local $a1 i32) (local $a2 i32) (local $a3 i32)
    (local $G v128) (local $M v128) (local $V v128) (local $W v128)
    (local $B1 v128) (local $B2 v128) (local $GM v128) (local $GV v128) (local $S v128) (local $K v128) (local $E v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $B1 (f32x4.splat (local.get $b1)))
    (local.set $B2 (f32x4.splat (local.get $b2)))
    (local.set $GM (f32x4.splat (local.get $gm)))
    (local.set $GV (f32x4.splat (local.get $gv)))
    (local.set $S (f32x4.splat (local.get $step)))
    (local.set $K (f32x4.splat (local.get $keep)))
    (local.set $E (f32x4.splat (local.get $eps)))
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $g) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done4
      (loop $four
        (br_if $done4 (i32.ge_u (local.get $g) (local.get $end4)))
        (local.set $a0 (i32.add (local.get $w) (i32.shl (i32.load (local.get $pos)) (i32.const 2))))
        (local.set $a1 (i32.add (local.get $w) (i32.shl (i32.load offset=4 (local.get $pos)) (i32.const 2))))
        (local.set $a2 (i32.add (local.get $w) (i32.shl (i32.load offset=8 (local.get $pos)) (i32.const 2))))
        (local.set $a3 (i32.add (local.get $w) (i32.shl (i32.load offset=12 (local.get $pos)) (i32.const 2))))
        (local.set $W (f32x4.splat (f32.load (local.get $a0))))
        (local.set $W (f32x4.replace_lane 1 (local.get $W) (f32.load (local.get $a1))))
        (local.set $W (f32x4.replace_lane 2 (local.get $W) (f32.load (local.get $a2))))
        (local.set $W (f32x4.replace_lane 3 (local.get $W) (f32.load (local.get $a3))))
        (local.set $G (v128.load (local.get $g)))
        (local.set $M (f32x4.add (f32x4.mul (local.get $B1) (v128.load (local.get $m))) (f32x4.mul (local.get $GM) (local.get $G))))
        (local.set $V (f32x4.add (f32x4.mul (local.get $B2) (v128.load (local.get $v)))
                                 (f32x4.mul (f32x4.mul (local.get $GV) (local.get $G)) (local.get $G))))
        (v128.store (local.get $m) (local.get $M))
        (v128.store (local.get $v) (local.get $V))
        (local.set $W
          (f32x4.sub (f32x4.mul (local.get $W) (local.get $K))
                     (f32x4.div (f32x4.mul (local.get $S) (local.get $M)) (f32x4.add (f32x4.sqrt (local.get $V)) (local.get $E)))))
        (f32.store (local.get $a0) (f32x4.extract_lane 0 (local.get $W)))
        (f32.store (local.get $a1) (f32x4.extract_lane 1 (local.get $W)))
        (f32.store (local.get $a2) (f32x4.extract_lane 2 (local.get $W)))
        (f32.store (local.get $a3) (f32x4.extract_lane 3 (local.get $W)))
        (local.set $m (i32.add (local.get $m) (i32.const 16)))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (local.set $pos (i32.add (local.get $pos) (i32.const 16)))
        (br $four)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
        (local.set $at (i32.add (local.get $w) (i32.shl (i32.load (local.get $pos)) (i32.const 2))))
        (local.set $gs (f32.load (local.get $g)))
        (local.set $ms (f32.add (f32.mul (local.get $b1) (f32.load (local.get $m))) (f32.mul (local.get $gm) (local.get $gs))))
        (local.set $vs (f32.add (f32.mul (local.get $b2) (f32.load (local.get $v)))
                                (f32.mul (f32.mul (local.get $gv) (local.get $gs)) (local.get $gs))))
        (f32.store (local.get $m) (local.get $ms))
        (f32.store (local.get $v) (local.get $vs))
        (f32.store (local.get $at)
          (f32.sub (f32.mul (f32.load (local.get $at)) (local.get $keep))
                   (f32.div (f32.mul (local.get $step) (local.get $ms)) (f32.add (f32.sqrt (local.get $vs)) (local.get $eps)))))
        (local.set $m (i32.add (local.get $m) (i32.const 4)))
        (local.set $v (i32.add (local.get $v) (i32.const 4)))
        (local.set $g (i32.add (local.get $g) (i32.const 4)))
        (local.set $pos (i32.add (local.get $pos) (i32.const 4)))
        (br $one))))
)
