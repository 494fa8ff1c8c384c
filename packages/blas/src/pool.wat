;; Max pooling's forward pass (NHWC, float32), four channels per vector (WebAssembly SIMD).
;; Pointers are byte offsets into the module's memory; sizes are counts. The semantics of pool.ts's
;; scalar loop: each window's first strict maximum wins (y, then x), NaN never does, and a window of
;; only NaN and −∞ gives −∞ with index −1.
(module
  (memory (export "memory") 1)

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
)
