;; Float32 kernels for the hot loops of Occam's host path, 4 lanes at a time (WebAssembly SIMD).
;; Pointers are byte offsets into the module's memory, 16-byte aligned; n is a count of floats.
;; Every lane does what the scalar JavaScript does, in the same order: the results are the same bits.
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

  ;; The same update at n kept positions: g[k] is the gradient at weight pos[k] (u32 indices). Scalar:
  ;; gathering four positions into vectors measured no faster, the scattered cache lines bound it.
  (func (export "adam_masked") (param $w i32) (param $m i32) (param $v i32) (param $g i32) (param $pos i32) (param $n i32)
    (param $b1 f32) (param $b2 f32) (param $gm f32) (param $gv f32) (param $step f32) (param $keep f32) (param $eps f32)
    (local $end i32) (local $at i32) (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
        (local.set $at (i32.shl (i32.load (local.get $pos)) (i32.const 2)))
        (local.set $gs (f32.load (local.get $g)))
        (local.set $ms (f32.add (f32.mul (local.get $b1) (f32.load (i32.add (local.get $m) (local.get $at)))) (f32.mul (local.get $gm) (local.get $gs))))
        (local.set $vs (f32.add (f32.mul (local.get $b2) (f32.load (i32.add (local.get $v) (local.get $at))))
                                (f32.mul (f32.mul (local.get $gv) (local.get $gs)) (local.get $gs))))
        (f32.store (i32.add (local.get $m) (local.get $at)) (local.get $ms))
        (f32.store (i32.add (local.get $v) (local.get $at)) (local.get $vs))
        (f32.store (i32.add (local.get $w) (local.get $at))
          (f32.sub (f32.mul (f32.load (i32.add (local.get $w) (local.get $at))) (local.get $keep))
                   (f32.div (f32.mul (local.get $step) (local.get $ms)) (f32.add (f32.sqrt (local.get $vs)) (local.get $eps)))))
        (local.set $g (i32.add (local.get $g) (i32.const 4)))
        (local.set $pos (i32.add (local.get $pos) (i32.const 4)))
        (br $one))))
)
