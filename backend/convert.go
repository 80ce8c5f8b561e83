package backend

import (
	"bytes"
	"encoding/json"
)

// structToMap renders a wire struct as the map a logical.Response carries, with
// the same field names its JSON tags give it (numbers kept exact).
func structToMap(v interface{}) map[string]interface{} {
	raw, err := json.Marshal(v)
	if err != nil {
		panic("marshal wire struct: " + err.Error()) // only our own types come here
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]interface{}
	if err := dec.Decode(&out); err != nil {
		panic("unmarshal wire struct: " + err.Error())
	}
	return out
}
