// The cert-manager and Traefik objects `csm kube render` writes, against the schemas
// of their CRDs (@kubernetes-models/*). Reads a JSON list of objects on stdin, prints a
// JSON list of {kind, name, error} (error null when valid); unknown kinds are an error.
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import * as traefik from "@kubernetes-models/traefik/traefik.io/v1alpha1";

const models = { "cert-manager.io/v1": certManager, "traefik.io/v1alpha1": traefik };
let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((obj) => {
  const Model = models[obj.apiVersion]?.[obj.kind];
  let error = null;
  if (!Model) error = `no schema for ${obj.apiVersion} ${obj.kind}`;
  else {
    try {
      new Model(obj).validate();
    } catch (e) {
      error = String(e.message || e);
    }
  }
  return { kind: obj.kind, name: obj.metadata?.name, error };
});
process.stdout.write(JSON.stringify(results));
