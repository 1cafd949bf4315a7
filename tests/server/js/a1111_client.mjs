// One txt2img through modelfusion's Automatic1111 image generator, as an app would call it.
// Usage: node a1111_client.mjs BASE_URL USER:PASSWORD MODEL
// Prints one JSON line: the image (base64) and the raw response's info and parameters, or the error message.
import { automatic1111, generateImage } from "modelfusion";

const [baseUrl, credentials, model] = process.argv.slice(2);
const api = automatic1111.Api({
  baseUrl: `${baseUrl}/sdapi/v1`,
  headers: { Authorization: `Basic ${Buffer.from(credentials).toString("base64")}` },
});
try {
  const { imageBase64, rawResponse } = await generateImage({
    model: automatic1111
      .ImageGenerator({ api, model, steps: 2, sampler: "Euler a", width: 32, height: 32, cfgScale: 6, seed: 21 })
      .withTextPrompt(),
    prompt: "a lighthouse",
    fullResponse: true,
  });
  console.log(JSON.stringify({ image: imageBase64, info: JSON.parse(rawResponse.info), parameters: rawResponse.parameters }));
} catch (error) {
  console.log(JSON.stringify({ error: error.message, status: error.statusCode ?? null }));
}
