import { describe, it, expect } from 'vitest';
import { parseAgentManifests } from './manifest.js';

describe('parseAgentManifests', () => {
  it('reads one plain YAML agent', () => {
    const yaml = 'name: echo\nimage: agent-samples/echo:1\nargs: ["hi"]\nresources:\n  cpu: 100m\n  memory: 64Mi\n';
    expect(parseAgentManifests(yaml, 'a.yaml')).toEqual([{ name: 'echo', image: 'agent-samples/echo:1', args: ['hi'], resources: { cpu: '100m', memory: '64Mi' } }]);
  });

  it('reads JSON', () => {
    expect(parseAgentManifests('{"name":"j","image":"i:1","env":{"A":"1"}}', 'a.json')).toEqual([{ name: 'j', image: 'i:1', env: { A: '1' } }]);
  });

  it('reads several documents, lists and item lists, skipping empty documents', () => {
    const text = ['name: a\nimage: i:1', '- name: b\n  image: i:2\n- name: c\n  image: i:3', 'items:\n  - name: d\n    image: i:4', ''].join('\n---\n');
    expect(parseAgentManifests(text, 'many.yaml').map((a) => a.name)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('flattens a kubectl-style object: metadata.name and labels, spec fields', () => {
    const text = 'apiVersion: agents/v1\nkind: Agent\nmetadata:\n  name: k\n  labels: {team: ml}\nspec:\n  image: i:1\n  restartPolicy: OnFailure\n';
    expect(parseAgentManifests(text, 'k.yaml')).toEqual([{ name: 'k', labels: { team: 'ml' }, image: 'i:1', restartPolicy: 'OnFailure' }]);
  });

  it('keeps unknown fields so the server can reject typos by name', () => {
    expect(parseAgentManifests('name: a\nimage: i:1\nimagee: x\n', 'a.yaml')[0]).toHaveProperty('imagee', 'x');
  });

  it('explains what is wrong and where', () => {
    expect(() => parseAgentManifests('name: a\n', 'a.yaml')).toThrow(/a\.yaml: "image" is required/);
    expect(() => parseAgentManifests('name: a\nimage: i\n---\nimage: i\n', 'two.yaml')).toThrow(/two\.yaml \(document 2\): "name" is required/);
    expect(() => parseAgentManifests('- name: a\n  image: i\n- 42\n', 'l.yaml')).toThrow(/l\.yaml item 2: an agent must be a mapping/);
    expect(() => parseAgentManifests('kind: Node\nname: n\nimage: i\n', 'n.yaml')).toThrow(/kind "Node" is not supported/);
    expect(() => parseAgentManifests('name: [a\n', 'bad.yaml')).toThrow(/bad\.yaml is not valid YAML or JSON/);
    expect(() => parseAgentManifests('', 'empty.yaml')).toThrow(/empty\.yaml holds no agents/);
    expect(() => parseAgentManifests('---\n---\n', 'empty.yaml')).toThrow(/holds no agents/);
  });
});
