// name: reference_circuit
// purpose: A published circuit of a model's heads, by class (e.g. the IOI circuit of GPT-2 small).
// param: model_id string = "openai-community/gpt2" — the model
// param: id string = "wang2022-ioi" — the reference circuit
// returns: head string, layer int, head_index int, class string, source string
// example: {"model_id": "openai-community/gpt2", "id": "wang2022-ioi"}
//
// `circuit-atlas compare-circuits --against reference:wang2022-ioi` seeds it when missing:
// Wang et al. (2022), "Interpretability in the Wild", 26 heads of GPT-2 small in 7 classes.
// Rows by layer and head.
MATCH (c:ReferenceCircuit {id: $id, model_id: $model_id})-[i:INCLUDES]->(h:Head)
RETURN h.id AS head, h.layer AS layer, h.head AS head_index, i.class AS class,
       c.source AS source
ORDER BY layer, head_index
