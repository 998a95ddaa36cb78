// Stylizes a photo in this page with a style's .tflite build, run by LiteRT.js on the CPU
// (WebAssembly): the photo is never sent anywhere. Served by `python -m perceptual_style.web`.
import {loadAndCompile, loadLiteRt, supportsFeature, Tensor} from '@litertjs/core';

const MAX_SIDE = 2048;  // photos with a longer side are scaled down to it
const RUNTIME = '/node_modules/@litertjs/core/wasm/';
// A module of one SIMD instruction (wasm-feature-detect's probe): LiteRT.js's WebAssembly
// (XNNPACK) needs SIMD, so a browser without it gets a message instead of a failed load.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2,
  1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

const $ = (id) => document.getElementById(id);
const state = {builds: [], tileMargin: 0, identity: '', threads: 1, photo: null, photoName: '',
  model: null, modelName: '', result: null};
// Loading a style and stylizing run one at a time, in `queue`; a request made while one runs
// supersedes those that have not started, and makes the running one stop at its next step.
let wanted = 0;
let queue = Promise.resolve();
let photoRequest = 0;

function status(text, kind = 'info') {
  $('status').textContent = text;
  $('status').dataset.kind = kind;
}

// fraction in [0, 1], NaN: under way, null: hidden.
function progress(fraction) {
  const bar = $('progress');
  bar.hidden = fraction === null;
  if (Number.isNaN(fraction)) bar.removeAttribute('value');
  else if (fraction !== null) bar.value = fraction;
}

function fail(message) {
  progress(null);
  status(message, 'error');
}

function schedule() {
  const ticket = ++wanted;
  queue = queue.then(() => (ticket === wanted ? update(ticket) : undefined))
      .catch((e) => fail(e.message));
}

const stale = (ticket) => ticket !== wanted;

// The chosen style: {build, weights (a Float32Array for a network of several styles, else
// null), label (for people), fileLabel (as the Python stylize names its outputs), pixel
// strength (1 where the weights took it)}; an Error for a mix whose weights are all zero.
function chosen() {
  const option = $('style').selectedOptions[0];
  const build = state.builds[option.dataset.build];
  const strength = $('strength').value / 100;
  if (!build.styles.length) {
    return {build, weights: null, label: build.name, fileLabel: build.name, strength};
  }
  let shares;
  let label;
  let fileLabel;
  if (option.dataset.mix) {
    shares = mixShares();
    if (!shares) {
      throw new Error(`The mix's weights are all zero: give at least one style of ` +
          `${build.name} a weight above 0.`);
    }
    const parts = build.styles.map((name, i) => [name, shares[i]]).filter(([, w]) => w > 0);
    label = `${build.name}: ` + parts.map(([name, w]) => `${name} ${percent(w)}`).join(' + ');
    fileLabel = `${build.name}-` + parts.map(([name, w]) => `${name}${+w.toPrecision(2)}`)
        .join('+');
  } else {
    shares = build.styles.map((name) => (name === option.dataset.style ? 1 : 0));
    label = `${build.name}:${option.dataset.style}`;
    fileLabel = `${build.name}-${option.dataset.style}`;
  }
  // As the Python --strength: towards the identity style in parameter space where the
  // network has one, else a pixel blend with the photo.
  const identity = build.styles.map((name) => (name === state.identity ? 1 : 0));
  if (!identity.some((w) => w)) {
    return {build, weights: Float32Array.from(shares), label, fileLabel, strength};
  }
  return {build, label, fileLabel, strength: 1,
    weights: Float32Array.from(shares, (w, i) => strength * w + (1 - strength) * identity[i])};
}

const percent = (share) => `${Math.round(100 * share)}%`;

// The mix sliders' weights scaled to sum to 1 (as --mix scales them), or null when they
// are all zero.
function mixShares() {
  const values = [...$('mix').querySelectorAll('input')].map((input) => Number(input.value));
  const total = values.reduce((sum, v) => sum + v, 0);
  return total > 0 ? values.map((v) => v / total) : null;
}

// While a network's mix is chosen, a slider for each of its styles, at an even blend of all
// but the identity style to start with.
function showMix() {
  const option = $('style').selectedOptions[0];
  const mix = $('mix');
  mix.hidden = !option.dataset.mix;
  if (mix.hidden || mix.dataset.build === option.dataset.build) return;
  mix.dataset.build = option.dataset.build;
  mix.replaceChildren();
  for (const name of state.builds[option.dataset.build].styles) {
    const label = document.createElement('label');
    const input = Object.assign(document.createElement('input'),
        {type: 'range', min: 0, max: 100, value: name === state.identity ? 0 : 50});
    input.dataset.style = name;
    input.addEventListener('input', () => {
      showShares();
      schedule();
    });
    label.append(`${name} `, input, document.createElement('output'));
    mix.append(label);
  }
  showShares();
}

// Each slider's share of the mix, as it is applied.
function showShares() {
  const shares = mixShares();
  $('mix').querySelectorAll('output').forEach((output, i) => {
    output.textContent = shares ? percent(shares[i]) : '–';
  });
}

function clearResult() {
  state.result = null;
  $('result').width = $('result').height = 0;
  $('download').disabled = true;
}

async function update(ticket) {
  let choice;
  try {
    choice = chosen();
  } catch (e) {
    clearResult();
    throw e;
  }
  const {build, weights, label} = choice;
  if (state.modelName !== build.name) {
    state.model?.delete();
    state.model = null;
    state.modelName = '';
    const started = performance.now();
    const bytes = await download(build);
    if (stale(ticket)) return;
    status(`Preparing ${build.name}…`, 'busy');
    progress(NaN);
    await new Promise((resolve) => setTimeout(resolve));  // shows the message first
    state.model = await loadAndCompile(bytes, {accelerator: 'wasm'});
    state.modelName = build.name;
    performance.measure('model', {start: started});
  }
  if (!state.photo) {
    progress(null);
    status(`${build.name} is ready: choose a photo.`, 'done');
    return;
  }
  const {photo, photoName} = state;
  const key = `${build.name} ${weights}`;
  if (state.result?.photo === photo && state.result.key === key) return;
  const started = performance.now();
  const stylized = await stylize(photo, state.model, weights, ticket, label);
  if (!stylized) return;
  const {duration} = performance.measure('stylize', {start: started});
  if (!performance.getEntriesByName('first-image').length) performance.mark('first-image');
  state.result = {photo, photoName, key, fileLabel: choice.fileLabel, pixels: stylized.pixels};
  compose(choice.strength);
  progress(null);
  status(`Stylized ${photoName} with ${label} in ${(duration / 1000).toFixed(2)} s ` +
      `(${stylized.how}, WebAssembly, ${state.threads} thread${state.threads > 1 ? 's' : ''}).`,
  'done');
}

async function download(build) {
  const response = await fetch(build.url);
  if (!response.ok) throw new Error(`Could not load ${build.name}: HTTP ${response.status}.`);
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    progress(received / build.bytes);
    status(`Loading ${build.name}: ${(received / 1e6).toFixed(1)} of ` +
        `${(build.bytes / 1e6).toFixed(1)} MB`, 'busy');
  }
  const bytes = new Uint8Array(received);
  chunks.reduce((offset, chunk) => (bytes.set(chunk, offset), offset + chunk.length), 0);
  return bytes;
}

// The stylized photo, float RGB in [0, 255], and how it was made: with a staged build (the
// server's own) as one untiled pass would make it, else in tiles normalized one by one.
// `weights`: the style weights of a network of several styles (staged builds only), or null.
function stylize(photo, model, weights, ticket, name) {
  const staged = model.signatures.whole && model.signatures.stage0;
  if (!staged) return stylizeInTiles(photo, model, ticket, name);
  const styles = weights ? {style_weights: [weights, [weights.length]]} : {};
  return stylizeStaged(photo, model, styles, ticket, name);
}

// Shows a step of the work and lets the page draw it; false once the work is superseded.
async function step(text, done, total, ticket) {
  status(text, 'busy');
  progress(total > 1 ? done / total : NaN);
  await new Promise((resolve) => setTimeout(resolve));
  return !stale(ticket);
}

// Runs the build's signature `key` on {input name: [typed array, shape]}: {output name:
// typed array}.
async function run(model, key, inputs) {
  const tensors = Object.fromEntries(Object.entries(inputs).map(
      ([name, [data, shape]]) => [name, new Tensor(data, shape)]));
  let outputs;
  try {
    outputs = await model.run(key, tensors);
  } finally {
    Object.values(tensors).forEach((t) => t.delete());
  }
  const arrays = Object.fromEntries(Object.entries(outputs).map(
      ([name, tensor]) => [name, tensor.toTypedArray()]));
  Object.values(outputs).forEach((t) => t.delete());
  return arrays;
}

const inputShape = (model, key, name) =>
  Array.from(model.signatures[key].getInputDetails().find((d) => d.name === name).shape);
const ceil4 = (n) => Math.ceil(n / 4) * 4;

// An image of `channels` floats a pixel, row by row.
function image(height, width, channels) {
  return {height, width, channels, data: new Float32Array(height * width * channels)};
}

// The photo's RGB, in the top-left corner of an image of height x width.
function photoImage(photo, height, width) {
  const result = image(height, width, 3);
  for (let y = 0; y < photo.height; y++) {
    for (let x = 0; x < photo.width; x++) {
      for (let c = 0; c < 3; c++) {
        result.data[(y * width + x) * 3 + c] = photo.data[(y * photo.width + x) * 4 + c];
      }
    }
  }
  return result;
}

// The height x width pixels of `source` from (top, left).
function crop(source, top, left, height, width) {
  const {channels} = source;
  const data = new Float32Array(height * width * channels);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * source.width + left) * channels;
    data.set(source.data.subarray(from, from + width * channels), y * width * channels);
  }
  return {height, width, channels, data};
}

// Copies the height x width pixels of `source` from (top, left) to `target` at (y, x).
function paste(target, y, x, source, top, left, height, width) {
  const {channels} = source;
  for (let r = 0; r < height; r++) {
    const from = ((top + r) * source.width + left) * channels;
    target.data.set(source.data.subarray(from, from + width * channels),
        ((y + r) * target.width + x) * channels);
  }
}

// Tiles along a side of `length` pixels (`padded` once padded to a multiple of 4 and to at
// least one window): [core start, core stop, window start], cores of `core` pixels, each
// with `margin` pixels of context where the side has them, windows shifted inwards at the
// far end. As tiling.grid does for perceptual_style.tflite.StagedRunner.
function grid(length, padded, core, margin, window) {
  const spans = [];
  for (let start = 0; start < length; start += core) {
    spans.push([start, Math.min(start + core, length),
      Math.max(Math.min(start - margin, padded - window), 0)]);
  }
  return spans;
}

// A stage's statistics [L, 2, C] (mean, variance) from the sums [L, 3, C] of a sweep made
// with `statistics`: count, sum of x - mean, sum of (x - mean)^2 over the whole photo.
function updatedStatistics(statistics, sums, layers, channels) {
  const result = new Float64Array(statistics.length);
  for (let l = 0; l < layers; l++) {
    for (let c = 0; c < channels; c++) {
      const [count, shifted, squares] = [0, 1, 2].map((i) => sums[(3 * l + i) * channels + c]);
      const mean = (2 * l) * channels + c;
      const shift = count > 0 ? shifted / count : 0;
      result[mean] = count > 0 ? statistics[mean] + shift : 0;
      result[mean + channels] = count > 0 ? Math.max(squares / count - shift * shift, 0) : 1;
    }
  }
  return result;
}

// With a staged build (see perceptual_style/tflite.py): a photo up to the build's size in one
// pass, normalized over the photo alone; a larger one stage by stage (the downsampling
// layers, each residual block, the upsampling layers), each over every tile in sweeps that
// measure the stage's statistics over the whole photo, then a sweep that keeps its output.
// `styles`: the style weights input of a network of several styles ({} for one).
async function stylizeStaged(photo, model, styles, ticket, name) {
  const {width, height} = photo;
  const [, windowHeight, windowWidth] = inputShape(model, 'whole', 'images');
  const tile = `${windowWidth}x${windowHeight}`;
  if (height <= windowHeight && width <= windowWidth) {
    if (!await step(`Stylizing ${state.photoName} with ${name}…`, 0, 1, ticket)) return null;
    const {stylized} = await run(model, 'whole', {
      images: [photoImage(photo, windowHeight, windowWidth).data,
        [1, windowHeight, windowWidth, 3]],
      size: [Int32Array.of(height, width), [2]], ...styles});
    const result = {height: windowHeight, width: windowWidth, channels: 3, data: stylized};
    return {pixels: crop(result, 0, 0, height, width).data, how: `one pass at ${tile}`};
  }
  const margin = state.tileMargin;
  const canvas = [Math.max(ceil4(height), windowHeight), Math.max(ceil4(width), windowWidth)];
  const rows = grid(height, canvas[0], windowHeight - 2 * margin, margin, windowHeight);
  const cols = grid(width, canvas[1], windowWidth - 2 * margin, margin, windowWidth);
  const stages = [];
  while (model.signatures[`stage${stages.length}`]) stages.push(`stage${stages.length}`);
  const layers = stages.map((key) => inputShape(model, key, 'statistics'));
  const tiles = rows.length * cols.length;
  // Sweeps: a stage's L normalizations and its output, one fewer for all but the first.
  const total = tiles * (1 + layers.reduce((sum, [count]) => sum + count, 0));
  let x = photoImage(photo, canvas[0], canvas[1]);
  let first = null;  // the sums of a stage's first normalization, from the stage before
  let done = 0;
  for (const [index, key] of stages.entries()) {
    const [count, , channels] = layers[index];
    const [input, output] = [index === 0 ? 'images' : 'features',
      index === stages.length - 1 ? 'stylized' : 'features'];
    const scale = canvas[0] / x.height;  // of this stage's input; its output's below
    const outScale = output === 'stylized' ? 1 : 4;
    const outChannels = model.signatures[key].getOutputDetails()
        .find((d) => d.name === output).shape[3];
    let statistics = new Float64Array(count * 2 * channels);
    for (let l = 0; l < count; l++) {
      statistics.fill(1, (2 * l + 1) * channels, (2 * l + 2) * channels);  // variances
    }
    if (first) {  // summed about mean 0: the first layer's mean and variance rows
      const firstChannels = first.length / 3;
      const measured = updatedStatistics(new Float64Array(2 * firstChannels), first, 1,
          firstChannels);
      statistics.set(measured.subarray(0, firstChannels));
      statistics.set(measured.subarray(firstChannels), channels);
    }
    const sweeps = count + (first ? 0 : 1);
    for (let sweep = 0; sweep < sweeps; sweep++) {
      const sums = new Float64Array(count * 3 * channels);
      const next = sweep === sweeps - 1 ?
        image(canvas[0] / outScale, canvas[1] / outScale, outChannels) : null;
      const nextFirst = next && output === 'features' ? new Float64Array(3 *
          model.signatures[key].getOutputDetails().find((d) => d.name === 'next_sums').shape[2]) :
        null;
      for (const [y0, y1, top] of rows) {
        for (const [x0, x1, left] of cols) {
          if (!await step(`Stylizing ${state.photoName} with ${name}: step ${done + 1} of ` +
              `${total}`, done, total, ticket)) return null;
          // The core in window pixels, to the window's end for the last (its padding counts).
          const bottom = (y1 === height ? top + windowHeight : y1) - top;
          const right = (x1 === width ? left + windowWidth : x1) - left;
          const window = crop(x, top / scale, left / scale, windowHeight / scale,
              windowWidth / scale);
          const result = await run(model, key, {
            [input]: [window.data, [1, window.height, window.width, window.channels]],
            size: [Int32Array.of(height - top, width - left), [2]],
            core: [Int32Array.of(y0 - top, bottom, x0 - left, right), [4]],
            statistics: [Float32Array.from(statistics), [count, 2, channels]], ...styles});
          result.sums.forEach((v, i) => { sums[i] += v; });
          if (next) {
            const out = {height: windowHeight / outScale, width: windowWidth / outScale,
              channels: outChannels, data: result[output]};
            paste(next, y0 / outScale, x0 / outScale, out, (y0 - top) / outScale,
                (x0 - left) / outScale, (bottom - y0 + top) / outScale,
                (right - x0 + left) / outScale);
            if (nextFirst) result.next_sums.forEach((v, i) => { nextFirst[i] += v; });
          }
          done++;
        }
      }
      if (next) [x, first] = [next, nextFirst];
      else statistics = updatedStatistics(statistics, sums, count, channels);
    }
  }
  return {pixels: crop(x, 0, 0, height, width).data,
    how: `${tiles} tiles of ${tile} in ${stages.length} stages`};
}

// Reflects index i into [0, length) without repeating the edge (NumPy's 'reflect').
function mirror(i, length) {
  if (length === 1) return 0;
  const period = 2 * length - 2;
  i %= period;
  return i < length ? i : period - i;
}

// Where tiles of `tile` pixels start along a side of `length`: one (reflection-padded) when
// it fits, else evenly spread so that neighbours overlap by at least `fade`.
function tileStarts(length, tile, fade) {
  if (length <= tile) return [0];
  const count = Math.ceil((length - fade) / (tile - fade));
  return Array.from({length: count}, (_, i) => Math.round(i * (length - tile) / (count - 1)));
}

// A tile's weights along one side: 1, fading over `fade` pixels at edges that meet another
// tile, so that neighbours cross-fade (each tile's instance normalization sees only the tile,
// so neighbours' tones differ a little).
function fadeWeights(start, tile, length, fade) {
  const weights = new Float32Array(tile);
  for (let i = 0; i < tile; i++) {
    let w = 1;
    if (start > 0) w = Math.min(w, (i + 0.5) / fade);
    if (start + tile < length) w = Math.min(w, (tile - i - 0.5) / fade);
    weights[i] = w;
  }
  return weights;
}

// With a build of one `stylize` signature (such as tools/export_tflite.py's): tile by tile at
// the build's input size, each tile normalized alone.
async function stylizeInTiles(photo, model, ticket, name) {
  const [details] = model.getInputDetails();
  const [, tileHeight, tileWidth] = details.shape;
  const {width, height, data} = photo;
  const fade = Math.max(1, Math.round(Math.min(tileHeight, tileWidth) / 8));
  const ys = tileStarts(height, tileHeight, fade);
  const xs = tileStarts(width, tileWidth, fade);
  const sum = new Float32Array(width * height * 3);
  const weight = new Float32Array(width * height);
  const input = new (details.dtype === 'uint8' ? Uint8Array : Float32Array)(
      tileHeight * tileWidth * 3);
  const tiles = ys.length * xs.length;
  let done = 0;
  for (const y0 of ys) {
    const wy = fadeWeights(y0, tileHeight, height, fade);
    for (const x0 of xs) {
      const text = `Stylizing ${state.photoName} with ${name}` +
          (tiles > 1 ? `: tile ${done + 1} of ${tiles}` : '…');
      if (!await step(text, done, tiles, ticket)) return null;
      for (let y = 0; y < tileHeight; y++) {
        const row = mirror(y0 + y, height) * width;
        for (let x = 0; x < tileWidth; x++) {
          const s = (row + mirror(x0 + x, width)) * 4;
          const d = (y * tileWidth + x) * 3;
          input[d] = data[s];
          input[d + 1] = data[s + 1];
          input[d + 2] = data[s + 2];
        }
      }
      const tensor = new Tensor(input, [1, tileHeight, tileWidth, 3]);
      let outputs;
      try {
        outputs = await model.run(tensor);
      } finally {
        tensor.delete();
      }
      const output = outputs[0].toTypedArray();
      outputs.forEach((t) => t.delete());
      const wx = fadeWeights(x0, tileWidth, width, fade);
      for (let y = 0; y < Math.min(tileHeight, height - y0); y++) {
        for (let x = 0; x < Math.min(tileWidth, width - x0); x++) {
          const w = wy[y] * wx[x];
          const p = (y0 + y) * width + x0 + x;
          const o = (y * tileWidth + x) * 3;
          weight[p] += w;
          sum[3 * p] += w * output[o];
          sum[3 * p + 1] += w * output[o + 1];
          sum[3 * p + 2] += w * output[o + 2];
        }
      }
      done++;
    }
  }
  for (let p = 0; p < weight.length; p++) {
    for (let c = 0; c < 3; c++) sum[3 * p + c] /= weight[p];
  }
  return {pixels: sum,
    how: `${tiles} tile${tiles > 1 ? 's' : ''} of ${tileWidth}x${tileHeight}` +
      (tiles > 1 ? ', each normalized alone' : '')};
}

// The result at pixel strength `strength`: a blend of the stylized image and the photo (as
// the Python --strength for a network without an identity style), rounded to bytes.
function compose(strength) {
  const {photo, pixels} = state.result;
  const image = new ImageData(photo.width, photo.height);
  for (let p = 0, q = 0; p < image.data.length; p += 4, q += 3) {
    for (let c = 0; c < 3; c++) {
      image.data[p + c] = strength * pixels[q + c] + (1 - strength) * photo.data[p + c];
    }
    image.data[p + 3] = 255;
  }
  const canvas = $('result');
  canvas.width = photo.width;
  canvas.height = photo.height;
  canvas.getContext('2d').putImageData(image, 0, 0);
  $('download').disabled = false;
}

async function openPhoto(blob, name) {
  const request = ++photoRequest;
  let bitmap;
  try {
    bitmap = await createImageBitmap(await blob, {imageOrientation: 'from-image'});
  } catch {
    if (request === photoRequest) {
      fail(`Could not read ${name}: the file is damaged or not an image this browser can open.`);
    }
    return;
  }
  if (request !== photoRequest) return;
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = $('photo');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.fillStyle = '#fff';  // transparent parts show as on white, as in the Python stylize
  context.fillRect(0, 0, width, height);
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, 0, 0, width, height);
  $('note').textContent = scale < 1 ?
    `${name} is ${bitmap.width}x${bitmap.height}: scaled down to ${width}x${height} ` +
      `(this page stylizes up to ${MAX_SIDE} pixels on the longer side).` :
    `${name}: ${width}x${height}`;
  bitmap.close();
  state.photo = context.getImageData(0, 0, width, height);
  state.photoName = name;
  clearResult();
  schedule();
}

function saveResult() {
  const {photoName, fileLabel} = state.result;
  $('result').toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `${photoName.replace(/\.[^.]*$/, '')}_${fileLabel}.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }, 'image/png');
}

function wire(sample) {
  $('file').addEventListener('change', () => {
    const [file] = $('file').files;
    if (file) openPhoto(file, file.name);
  });
  if (sample) {
    $('sample').hidden = false;
    $('sample').addEventListener('click', () => openPhoto(
        fetch(sample).then((response) => response.blob()), sample.split('/').pop()));
  }
  // A photo dropped anywhere on the page (not only on the box that says so).
  addEventListener('dragover', (event) => {
    event.preventDefault();
    $('drop').classList.add('over');
  });
  addEventListener('dragleave', (event) => {
    if (!event.relatedTarget) $('drop').classList.remove('over');
  });
  addEventListener('drop', (event) => {
    event.preventDefault();
    $('drop').classList.remove('over');
    const [file] = event.dataTransfer.files;
    if (file) openPhoto(file, file.name);
    else fail('Drop an image file (JPEG, PNG, WebP, ...).');
  });
  $('style').addEventListener('change', () => {
    showMix();
    schedule();
  });
  // Strength in parameter space (a network with an identity style) reruns the network; a
  // pixel blend is only redrawn.
  $('strength').addEventListener('input', () => {
    $('strength-value').textContent = `${$('strength').value}%`;
    const option = $('style').selectedOptions[0];
    if (state.builds[option.dataset.build].styles.includes(state.identity)) schedule();
    else if (state.result) compose($('strength').value / 100);
  });
  $('download').addEventListener('click', saveResult);
}

async function start() {
  if (typeof WebAssembly !== 'object' || !WebAssembly.validate(SIMD_PROBE)) {
    fail('This browser cannot run the styles: they need WebAssembly with SIMD ' +
        '(Chrome or Edge 91+, Firefox 89+, Safari 16.4+).');
    return;
  }
  const response = await fetch('/catalog.json');
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  const catalog = await response.json();
  state.builds = catalog.builds;
  state.tileMargin = catalog.tile_margin;
  state.identity = catalog.identity;
  fillStyles(new URLSearchParams(location.search).get('style') ?? '');
  showMix();
  wire(catalog.sample);
  queue = loadRuntime();  // what is scheduled waits for it
  schedule();
}

// The style menu: each build of one style; each style of a network of several, and their
// mix, under its name. `wanted` (the page's ?style=) preselects a build by its name or the
// style prefix of its name, and NAME:STYLE a style of a network of several.
function fillStyles(wanted) {
  const [wantedBuild, wantedStyle] = wanted.split(':');
  const select = $('style');
  state.builds.forEach((build, i) => {
    const size = `(${(build.bytes / 1e6).toFixed(1)} MB)`;
    const match = build.name === wantedBuild || build.name.startsWith(`${wantedBuild}_`);
    const option = (text, selected, data) => {
      const item = new Option(text, '', false, selected);
      Object.assign(item.dataset, {build: i, ...data});
      return item;
    };
    if (!build.styles.length) {
      select.add(option(`${build.name} ${size}`, match, {}));
      return;
    }
    const group = document.createElement('optgroup');
    group.label = `${build.name} ${size}: ${build.styles.length} styles`;
    build.styles.forEach((style, j) => group.append(option(style,
        match && (style === wantedStyle || (!wantedStyle && j === 0)), {style})));
    group.append(option('mix of these styles…', false, {mix: 'yes'}));
    select.add(group);
  });
  select.disabled = false;
}

async function loadRuntime() {
  status('Loading the LiteRT.js runtime…', 'busy');
  progress(NaN);
  // Threads need cross-origin isolation (the server's headers) and relaxed SIMD.
  const threads = self.crossOriginIsolated && await supportsFeature('relaxedSimd') &&
      await supportsFeature('threads');
  await loadLiteRt(RUNTIME, {threads}).catch((e) => {
    throw new Error(`Could not load the LiteRT.js runtime: ${e.message}`);
  });
  state.threads = threads ? navigator.hardwareConcurrency : 1;
  performance.measure('runtime', {start: 0});
}

start().catch((e) => fail(`Could not start: ${e.message}`));
