import { storeContract } from "./store_contract.ts";
import { MemoryStore } from "./memory.ts";

storeContract("memory", () => Promise.resolve(new MemoryStore()));
