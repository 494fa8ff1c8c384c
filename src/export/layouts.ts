// Occam stores a dense kernel as [inputs, outputs] and a convolution kernel as [height, width,
// in, out] (TF.js's layouts). PyTorch's Linear and ONNX's/PyTorch's Conv want them the other way:
// these re-lay a tensor out for them.

export interface Laid {
  data: Float32Array;
  shape: number[];
}

/** [rows, cols] → [cols, rows]. */
export function transposed(data: Float32Array, [rows, cols]: number[]): Laid {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return { data: out, shape: [cols, rows] };
}

/** [kh, kw, in, out] (HWIO) → [out, in, kh, kw] (OIHW). */
export function torchConvWeight(data: Float32Array, [kh, kw, inputs, outputs]: number[]): Laid {
  const out = new Float32Array(data.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < inputs; i++)
        for (let o = 0; o < outputs; o++) out[((o * inputs + i) * kh + h) * kw + w] = data[((h * kw + w) * inputs + i) * outputs + o];
  return { data: out, shape: [outputs, inputs, kh, kw] };
}
