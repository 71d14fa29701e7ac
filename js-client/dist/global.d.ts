// Types of the global `Hearth` that the IIFE build (hearth.js, hearth.min.js)
// defines for pages using <script src=".../hearth.js">. Written by hand (not
// generated): reference it with
//
//     /// <reference types="@hearth-rt/client/global" />
//
// or list "@hearth-rt/client/global" in tsconfig's "types".

import type * as HearthModule from "./types/index.js"

declare global {
  /** The Hearth client, as defined by the IIFE build. */
  const Hearth: typeof HearthModule
  namespace Hearth {
    type Socket = HearthModule.Socket
    type Channel = HearthModule.Channel
    type Push = HearthModule.Push
    type Presence = HearthModule.Presence
    type SocketOptions = HearthModule.SocketOptions
    type Message = HearthModule.Message
    type RecoverInfo = HearthModule.RecoverInfo
    type TokenInfo = HearthModule.TokenInfo
    type CloseInfo = HearthModule.CloseInfo
  }
}

export {}
