;; The blas backend's loops in WebAssembly (SIMD where lanes help): max pooling and its gradient,
;; im2col and its adjoint for the convolutions, the bias + ReLU epilogue, strided copies and the
;; four arithmetic ops over rows. NHWC, float32.
;; Pointers are byte offsets into the module's memory; sizes and indices are counts of floats.
(module
  (memory (export "memory") 1)

  ;; Max pooling: the semantics of pool.ts's scalar loop. Each window's first strict maximum wins
  ;; (y, then x), NaN never does, and a window of only NaN and −∞ gives −∞ with index −1.
  ;; out[o + c] = max of the window, argmax[o + c] = its flat input index, for channels c (a multiple of 4).
  (func (export "max_pool") (param $x i32) (param $out i32) (param $argmax i32)
    (param $batch i32) (param $inHeight i32) (param $inWidth i32) (param $channels i32)
    (param $outHeight i32) (param $outWidth i32) (param $strideHeight i32) (param $strideWidth i32)
    (param $filterHeight i32) (param $filterWidth i32) (param $top i32) (param $left i32)
    (local $b i32) (local $oy i32) (local $ox i32) (local $c i32) (local $y i32) (local $xp i32)
    (local $y0 i32) (local $y1 i32) (local $x0 i32) (local $x1 i32) (local $base i32) (local $image i32)
    (local $best v128) (local $index v128) (local $v v128) (local $better v128)
    (block $batch_done
      (loop $each_image
        (br_if $batch_done (i32.ge_u (local.get $b) (local.get $batch)))
        (local.set $image (i32.mul (local.get $b) (i32.mul (i32.mul (local.get $inHeight) (local.get $inWidth)) (local.get $channels))))
        (local.set $oy (i32.const 0))
        (block $rows_done
          (loop $each_row
            (br_if $rows_done (i32.ge_u (local.get $oy) (local.get $outHeight)))
            (local.set $y0 (i32.sub (i32.mul (local.get $oy) (local.get $strideHeight)) (local.get $top)))
            (local.set $y1 (i32.add (local.get $y0) (local.get $filterHeight)))
            (if (i32.lt_s (local.get $y0) (i32.const 0)) (then (local.set $y0 (i32.const 0))))
            (if (i32.gt_s (local.get $y1) (local.get $inHeight)) (then (local.set $y1 (local.get $inHeight))))
            (local.set $ox (i32.const 0))
            (block $cols_done
              (loop $each_col
                (br_if $cols_done (i32.ge_u (local.get $ox) (local.get $outWidth)))
                (local.set $x0 (i32.sub (i32.mul (local.get $ox) (local.get $strideWidth)) (local.get $left)))
                (local.set $x1 (i32.add (local.get $x0) (local.get $filterWidth)))
                (if (i32.lt_s (local.get $x0) (i32.const 0)) (then (local.set $x0 (i32.const 0))))
                (if (i32.gt_s (local.get $x1) (local.get $inWidth)) (then (local.set $x1 (local.get $inWidth))))
                (local.set $c (i32.const 0))
                (block $channels_done
                  (loop $each_four
                    (br_if $channels_done (i32.ge_u (local.get $c) (local.get $channels)))
                    (local.set $best (f32x4.splat (f32.const -inf)))
                    (local.set $index (i32x4.splat (i32.const -1)))
                    (local.set $y (local.get $y0))
                    (block $window_done
                      (loop $window_row
                        (br_if $window_done (i32.ge_s (local.get $y) (local.get $y1)))
                        (local.set $xp (local.get $x0))
                        (block $line_done
                          (loop $window_col
                            (br_if $line_done (i32.ge_s (local.get $xp) (local.get $x1)))
                            (local.set $base (i32.add (i32.add (local.get $image)
                              (i32.mul (i32.add (i32.mul (local.get $y) (local.get $inWidth)) (local.get $xp)) (local.get $channels)))
                              (local.get $c)))
                            (local.set $v (v128.load (i32.add (local.get $x) (i32.shl (local.get $base) (i32.const 2)))))
                            (local.set $better (f32x4.gt (local.get $v) (local.get $best)))
                            (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $better)))
                            (local.set $index (v128.bitselect
                              (i32x4.add (i32x4.splat (local.get $base)) (v128.const i32x4 0 1 2 3))
                              (local.get $index) (local.get $better)))
                            (local.set $xp (i32.add (local.get $xp) (i32.const 1)))
                            (br $window_col)))
                        (local.set $y (i32.add (local.get $y) (i32.const 1)))
                        (br $window_row)))
                    (v128.store (local.get $out) (local.get $best))
                    (v128.store (local.get $argmax) (local.get $index))
                    (local.set $out (i32.add (local.get $out) (i32.const 16)))
                    (local.set $argmax (i32.add (local.get $argmax) (i32.const 16)))
                    (local.set $c (i32.add (local.get $c) (i32.const 4)))
                    (br $each_four)))
                (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
                (br $each_col)))
            (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
            (br $each_row)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $each_image))))
;; values[i] += bias[i mod channels] (float32 adds), then with $relu max(v, 0), which is the cpu
  ;; Relu's 0.5·(v + |v|) for every v (+0 for negatives and −0, 0 for −∞, NaN stays NaN).
  (func (export "bias_relu") (param $values i32) (param $bias i32) (param $n i32) (param $channels i32) (param $relu i32)
    (local $floor f32)
    (local $end i32) (local $c i32) (local $c4 i32) (local $at i32)
    (local.set $end (i32.add (local.get $values) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $c4 (i32.and (local.get $channels) (i32.const -4)))
    ;; Without the ReLU the max is with −∞, which leaves every value as it is.
    (local.set $floor (select (f32.const 0) (f32.const -inf) (local.get $relu)))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $values) (local.get $end)))
        (local.set $c (i32.const 0))
        (block $four_done
          (loop $each_four
            (br_if $four_done (i32.ge_u (local.get $c) (local.get $c4)))
            (local.set $at (i32.add (local.get $values) (i32.shl (local.get $c) (i32.const 2))))
            (v128.store (local.get $at)
              (f32x4.max (f32x4.add (v128.load (local.get $at)) (v128.load (i32.add (local.get $bias) (i32.shl (local.get $c) (i32.const 2)))))
                         (f32x4.splat (local.get $floor))))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $each_four)))
        (block $one_done
          (loop $each_one
            (br_if $one_done (i32.ge_u (local.get $c) (local.get $channels)))
            (local.set $at (i32.add (local.get $values) (i32.shl (local.get $c) (i32.const 2))))
            (f32.store (local.get $at)
              (f32.max (f32.add (f32.load (local.get $at)) (f32.load (i32.add (local.get $bias) (i32.shl (local.get $c) (i32.const 2)))))
                       (local.get $floor)))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $each_one)))
        (local.set $values (i32.add (local.get $values) (i32.shl (local.get $channels) (i32.const 2))))
        (br $each_row))))

  ;; The receptive fields of output pixels [start, start + count) of a stride-s, dilation-1
  ;; convolution, as rows of `cols` (filterRow, filterCol, inChannel); zeros where they hang over the
  ;; padding. With $adjoint the reverse: every entry of `cols` is added onto the input it came from.
  (func (export "im2col") (param $x i32) (param $cols i32) (param $start i32) (param $count i32)
    (param $inHeight i32) (param $inWidth i32) (param $channels i32) (param $outHeight i32) (param $outWidth i32)
    (param $filterHeight i32) (param $filterWidth i32) (param $strideHeight i32) (param $strideWidth i32)
    (param $top i32) (param $left i32) (param $adjoint i32)
    (local $row i32) (local $end i32) (local $image i32) (local $pixel i32) (local $outY i32) (local $outX i32)
    (local $inY0 i32) (local $inX0 i32) (local $inY i32) (local $fy i32) (local $firstX i32) (local $endX i32)
    (local $before i32) (local $inside i32) (local $after i32) (local $rowBytes i32) (local $from i32) (local $to i32)
    (local $i i32) (local $perImage i32)
    (local.set $rowBytes (i32.shl (i32.mul (local.get $filterWidth) (local.get $channels)) (i32.const 2)))
    (local.set $perImage (i32.mul (local.get $outHeight) (local.get $outWidth)))
    (local.set $row (local.get $start))
    (local.set $end (i32.add (local.get $start) (local.get $count)))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $image (i32.div_u (local.get $row) (local.get $perImage)))
        (local.set $pixel (i32.sub (local.get $row) (i32.mul (local.get $image) (local.get $perImage))))
        (local.set $outY (i32.div_u (local.get $pixel) (local.get $outWidth)))
        (local.set $outX (i32.sub (local.get $pixel) (i32.mul (local.get $outY) (local.get $outWidth))))
        (local.set $inY0 (i32.sub (i32.mul (local.get $outY) (local.get $strideHeight)) (local.get $top)))
        (local.set $inX0 (i32.sub (i32.mul (local.get $outX) (local.get $strideWidth)) (local.get $left)))
        ;; The in-bounds part of each filter row, in bytes: [before | inside | after].
        (local.set $firstX (select (local.get $inX0) (i32.const 0) (i32.gt_s (local.get $inX0) (i32.const 0))))
        (local.set $endX (i32.add (local.get $inX0) (local.get $filterWidth)))
        (if (i32.gt_s (local.get $endX) (local.get $inWidth)) (then (local.set $endX (local.get $inWidth))))
        (local.set $before (i32.shl (i32.mul (i32.sub (local.get $firstX) (local.get $inX0)) (local.get $channels)) (i32.const 2)))
        (if (i32.gt_s (local.get $before) (local.get $rowBytes)) (then (local.set $before (local.get $rowBytes))))
        (local.set $inside (i32.const 0))
        (if (i32.gt_s (local.get $endX) (local.get $firstX))
          (then (local.set $inside (i32.shl (i32.mul (i32.sub (local.get $endX) (local.get $firstX)) (local.get $channels)) (i32.const 2)))))
        (local.set $after (i32.sub (i32.sub (local.get $rowBytes) (local.get $before)) (local.get $inside)))
        (local.set $fy (i32.const 0))
        (block $filter_done
          (loop $each_filter_row
            (br_if $filter_done (i32.ge_u (local.get $fy) (local.get $filterHeight)))
            (local.set $inY (i32.add (local.get $inY0) (local.get $fy)))
            (if (i32.or (i32.lt_s (local.get $inY) (i32.const 0)) (i32.ge_s (local.get $inY) (local.get $inHeight)))
              (then (if (i32.eqz (local.get $adjoint)) (then (memory.fill (local.get $cols) (i32.const 0) (local.get $rowBytes)))))
              (else
                (local.set $to (i32.add (local.get $cols) (local.get $before)))
                (local.set $from (i32.add (local.get $x) (i32.shl
                  (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $image) (local.get $inHeight)) (local.get $inY)) (local.get $inWidth))
                                    (local.get $firstX)) (local.get $channels))
                  (i32.const 2))))
                (if (local.get $adjoint)
                  (then
                    ;; x[from + i] += cols[to + i], four at a time, then one at a time.
                    (local.set $i (i32.const 0))
                    (block $add4_done
                      (loop $add4
                        (br_if $add4_done (i32.gt_s (i32.add (local.get $i) (i32.const 16)) (local.get $inside)))
                        (v128.store (i32.add (local.get $from) (local.get $i))
                          (f32x4.add (v128.load (i32.add (local.get $from) (local.get $i))) (v128.load (i32.add (local.get $to) (local.get $i)))))
                        (local.set $i (i32.add (local.get $i) (i32.const 16)))
                        (br $add4)))
                    (block $add1_done
                      (loop $add1
                        (br_if $add1_done (i32.ge_s (local.get $i) (local.get $inside)))
                        (f32.store (i32.add (local.get $from) (local.get $i))
                          (f32.add (f32.load (i32.add (local.get $from) (local.get $i))) (f32.load (i32.add (local.get $to) (local.get $i)))))
                        (local.set $i (i32.add (local.get $i) (i32.const 4)))
                        (br $add1))))
                  (else
                    (if (local.get $before) (then (memory.fill (local.get $cols) (i32.const 0) (local.get $before))))
                    (if (i32.ge_u (local.get $inside) (i32.const 64))
                      (then (memory.copy (local.get $to) (local.get $from) (local.get $inside)))
                      (else
                        (local.set $i (i32.const 0))
                        (block $copy_done
                          (loop $copy
                            (br_if $copy_done (i32.ge_s (local.get $i) (local.get $inside)))
                            (f32.store (i32.add (local.get $to) (local.get $i)) (f32.load (i32.add (local.get $from) (local.get $i))))
                            (local.set $i (i32.add (local.get $i) (i32.const 4)))
                            (br $copy)))))
                    (if (local.get $after)
                      (then (memory.fill (i32.add (local.get $to) (local.get $inside)) (i32.const 0) (local.get $after))))))))
            (local.set $cols (i32.add (local.get $cols) (local.get $rowBytes)))
            (local.set $fy (i32.add (local.get $fy) (i32.const 1)))
            (br $each_filter_row)))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $each_row))))

  ;; Max pooling's gradient: dx[argmax[i]] += dy[i] for the n outputs whose window had a maximum
  ;; (index ≥ 0), in output order, as pool.ts's loop adds them; dx zeroed by the caller.
  (func (export "max_pool_grad") (param $dy i32) (param $argmax i32) (param $n i32) (param $dx i32)
    (local $end i32) (local $index i32) (local $at i32)
    (local.set $end (i32.add (local.get $dy) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $dy) (local.get $end)))
        (local.set $index (i32.load (local.get $argmax)))
        (if (i32.ge_s (local.get $index) (i32.const 0))
          (then
            (local.set $at (i32.add (local.get $dx) (i32.shl (local.get $index) (i32.const 2))))
            (f32.store (local.get $at) (f32.add (f32.load (local.get $at)) (f32.load (local.get $dy))))))
        (local.set $dy (i32.add (local.get $dy) (i32.const 4)))
        (local.set $argmax (i32.add (local.get $argmax) (i32.const 4)))
        (br $each))))

  ;; A transpose that keeps the last axis: dst gets runs of $run floats, in order, each read from
  ;; src + i0·s0 + i1·s1 + i2·s2 floats for i0 < n0, i1 < n1, i2 < n2 (the output's outer axes).
  (func (export "copy_runs") (param $src i32) (param $dst i32) (param $n0 i32) (param $n1 i32) (param $n2 i32)
    (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $run i32)
    (local $i0 i32) (local $i1 i32) (local $i2 i32) (local $bytes i32) (local $from i32)
    (local.set $bytes (i32.shl (local.get $run) (i32.const 2)))
    (block $done0
      (loop $each0
        (br_if $done0 (i32.ge_u (local.get $i0) (local.get $n0)))
        (local.set $i1 (i32.const 0))
        (block $done1
          (loop $each1
            (br_if $done1 (i32.ge_u (local.get $i1) (local.get $n1)))
            (local.set $from (i32.add (local.get $src) (i32.shl (i32.add (i32.mul (local.get $i0) (local.get $s0))
              (i32.mul (local.get $i1) (local.get $s1))) (i32.const 2))))
            (local.set $i2 (i32.const 0))
            (block $done2
              (loop $each2
                (br_if $done2 (i32.ge_u (local.get $i2) (local.get $n2)))
                (memory.copy (local.get $dst) (local.get $from) (local.get $bytes))
                (local.set $dst (i32.add (local.get $dst) (local.get $bytes)))
                (local.set $from (i32.add (local.get $from) (i32.shl (local.get $s2) (i32.const 2))))
                (local.set $i2 (i32.add (local.get $i2) (i32.const 1)))
                (br $each2)))
            (local.set $i1 (i32.add (local.get $i1) (i32.const 1)))
            (br $each1)))
        (local.set $i0 (i32.add (local.get $i0) (i32.const 1)))
        (br $each0))))

  ;; out = full op row over rows of $inner values ($op: 0 add, 1 sub, 2 mul, 3 div), `row` repeating
  ;; ($inner = n: two arrays of one size), the row operand on the left when $rowFirst. Four lanes at a
  ;; time: a row's last four may run past it into the next row, which is written after, and the last
  ;; row's into the 16 bytes the caller keeps after each region. Float32 ops, so JavaScript's bits.
  (func (export "binary_rows") (param $op i32) (param $full i32) (param $row i32) (param $out i32) (param $n i32)
    (param $inner i32) (param $rowFirst i32)
    (local $at i32) (local $j i32) (local $x v128) (local $y v128) (local $t v128) (local $end i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $j (i32.const 0))
        (block $row_done
          (loop $each_four
            (br_if $row_done (i32.ge_u (local.get $j) (i32.shl (local.get $inner) (i32.const 2))))
            (local.set $x (v128.load (i32.add (local.get $full) (i32.add (local.get $at) (local.get $j)))))
            (local.set $y (v128.load (i32.add (local.get $row) (local.get $j))))
            (if (local.get $rowFirst)
              (then (local.set $t (local.get $x)) (local.set $x (local.get $y)) (local.set $y (local.get $t))))
            (block $done
              (block $div
                (block $mul
                  (block $sub
                    (block $add (br_table $add $sub $mul $div (local.get $op)))
                    (local.set $x (f32x4.add (local.get $x) (local.get $y)))
                    (br $done))
                  (local.set $x (f32x4.sub (local.get $x) (local.get $y)))
                  (br $done))
                (local.set $x (f32x4.mul (local.get $x) (local.get $y)))
                (br $done))
              (local.set $x (f32x4.div (local.get $x) (local.get $y))))
            (v128.store (i32.add (local.get $out) (i32.add (local.get $at) (local.get $j))) (local.get $x))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $each_four)))
        (local.set $at (i32.add (local.get $at) (i32.shl (local.get $inner) (i32.const 2))))
        (br $each_row))))
)
