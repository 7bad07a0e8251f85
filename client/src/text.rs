//! Every text the page shows a person, in each language it speaks: English, Traditional
//! Chinese and Simplified Chinese.
//!
//! - **Which language.** [`Lang::choose`]: `?lang=` in the address, else the one the person
//!   picked before (kept in the browser), else the first of `navigator.languages` we speak,
//!   else English.
//! - **What the engine and the browser layer say** is a [`Text`]: a value with what it needs
//!   (a name, a code), turned into words only when shown ([`Text::show`]). A match over the
//!   variants gives every variant its three translations; the tests check that none is empty
//!   and that no English sentence is left in the Chinese ones.
//! - **The page's fixed words** (`www/index.html`: labels, buttons, headings) are keyed by the
//!   elements' `data-t` attributes (and `data-t-label`, `data-t-placeholder`, `data-t-title`
//!   for `aria-label`, `placeholder` and `title`): [`label`] has each key's words; the tests
//!   check every key of the page against it.
//! - **Nothing an exception says** reaches a person: the browser's words go to the console and
//!   the call log; the page says what happened and what to do in the person's language.

use crate::{
    core::{chat_guard::Dropped, files::FileError},
    diagnose::{CandidateType, IceSetup},
};

/// A language the page speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Traditional Chinese (Taiwan, Hong Kong, Macau).
    ZhHant,
    /// Simplified Chinese (mainland China, Singapore).
    ZhHans,
}

impl Lang {
    /// Every language, in the order `langSelect` lists them.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::ZhHant, Lang::ZhHans];

    /// The BCP 47 tag: `<html lang>`, `?lang=` and the option values of `langSelect`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhHant => "zh-Hant",
            Lang::ZhHans => "zh-Hans",
        }
    }

    /// The language's own name for itself.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhHant => "繁體中文",
            Lang::ZhHans => "简体中文",
        }
    }

    /// The language a BCP 47 tag asks for, if we speak it: `zh-TW`, `zh-HK`, `zh-MO` and any
    /// `zh-Hant…` are Traditional; `zh`, `zh-CN`, `zh-SG` and `zh-Hans…` Simplified; `en…`
    /// English. Case does not matter (`zh-tw` is as good as `zh-TW`).
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
        let mut parts = tag.split('-');
        match parts.next()? {
            "en" => Some(Lang::En),
            "zh" => {
                let rest: Vec<&str> = parts.collect();
                if rest.contains(&"hant") {
                    Some(Lang::ZhHant)
                } else if rest.contains(&"hans") {
                    Some(Lang::ZhHans)
                } else if rest.iter().any(|r| matches!(*r, "tw" | "hk" | "mo")) {
                    Some(Lang::ZhHant)
                } else {
                    Some(Lang::ZhHans)
                }
            }
            _ => None,
        }
    }

    /// The page's language: `?lang=` (`query`), else the one picked before (`stored`), else
    /// the first of the browser's languages (`preferred`, `navigator.languages`) we speak,
    /// else English. A tag we do not speak is passed over.
    pub fn choose(query: Option<&str>, stored: Option<&str>, preferred: &[String]) -> Lang {
        query
            .and_then(Lang::from_tag)
            .or_else(|| stored.and_then(Lang::from_tag))
            .or_else(|| preferred.iter().find_map(|tag| Lang::from_tag(tag)))
            .unwrap_or_default()
    }

    /// The words of `en`, `hant` or `hans`, whichever is this language.
    fn pick<T>(self, en: T, hant: T, hans: T) -> T {
        match self {
            Lang::En => en,
            Lang::ZhHant => hant,
            Lang::ZhHans => hans,
        }
    }
}

/// Why the relay connection is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayWhy {
    /// It was never reached.
    Unreachable,
    /// It is shutting down (close code 1001).
    ShuttingDown,
    /// It closed the connection over a message too big (1009).
    TooBig,
    /// The connection ended without a word (1006 after it was open).
    Lost,
    /// It closed the connection with this code.
    Closed(u16),
    /// It stopped answering the page's pings.
    NoAnswer,
    /// It cannot reach the store it shares rooms through (Redis).
    StoreDown,
}

/// Why the camera or microphone (or the screen) could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaProblem {
    /// The page was opened over plain http from another machine.
    InsecureContext,
    /// The person or the browser said no.
    Denied,
    /// There is no such device.
    NoDevice,
    /// Another program holds it.
    InUse,
    /// Anything else (the browser's words went to the console).
    Other,
}

/// What this browser lacks to make a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// `RTCPeerConnection`: no WebRTC at all.
    PeerConnection,
    /// `WebSocket`: no way to reach the relay.
    WebSocket,
}

/// Something the page tells a person, with what it needs; [`Text::show`] words it.
#[derive(Clone, PartialEq, Eq)]
pub enum Text {
    /// Asking for the camera and microphone, or joining.
    Starting,
    /// Setting up a call.
    Connecting,
    /// Media flows with everybody called.
    Connected,
    /// Alone in the room.
    WaitingAlone,
    /// Someone is here who has not called.
    WaitingOtherHere,
    /// We hung up.
    CallEnded,
    /// The other person hung up.
    OtherHungUp,
    /// The relay is away; the page reconnects (and the calls go on, if there are any).
    RelayAway {
        /// Why it is away.
        why: RelayWhy,
        /// There are calls, and they go on.
        calls_go_on: bool,
    },
    /// The relay refused the name: somebody in the room has it.
    NameTaken(String),
    /// The name is empty, too long or has control characters.
    NameInvalid,
    /// The room is full.
    RoomFull,
    /// Waiting at a locked room's door for someone inside to let us in.
    Knocking,
    /// The people inside the locked room did not let us in.
    KnockRefused,
    /// The person in control removed us from the room.
    Removed,
    /// The room needs a passphrase (`wrong`: the one given is not it).
    Passphrase {
        /// A passphrase was given, and it was wrong.
        wrong: bool,
    },
    /// The relay refused something else (the kind goes to the call log).
    Refused,
    /// A call could not be set up (the browser's words went to the console).
    CallFailed,
    /// The other page never answered.
    NeverAnswered,
    /// A connection dropped and could not be restored.
    ConnectionLost,
    /// ICE found no path: what was configured, and which TURN server refused credentials.
    NoPath {
        /// The kinds of ICE servers the page was given.
        setup: IceSetup,
        /// The TURN server that refused the credentials, if one did.
        turn_refused: Option<String>,
    },
    /// The camera or microphone could not be opened.
    Media(MediaProblem),
    /// The screen could not be shared.
    Screen(MediaProblem),
    /// This browser cannot share a screen.
    ScreenUnsupported,
    /// The camera (or the microphone) went away and there is no other.
    DeviceGone {
        /// The camera, not the microphone.
        camera: bool,
    },
    /// The browser cannot make calls.
    Unsupported(Missing),
    /// A chat message with nothing in it.
    ChatEmpty,
    /// A chat message `.0` characters long, over the limit `.1`.
    ChatTooLong(usize, usize),
    /// A chat message with nobody to send it to.
    ChatNobody,
    /// What a peer sent on the chat was left out: too big, or too much too fast.
    ChatDropped {
        /// Who sent it: their name, or [`Text::Someone`]'s words.
        who: String,
        /// Why it was left out.
        why: Dropped,
    },
    /// A file we send: its name, and to whom (a name, or everybody's word).
    FileTo {
        /// The file's name.
        name: String,
        /// To whom.
        who: String,
    },
    /// A file that comes to us: its name, and from whom.
    FileFrom {
        /// The file's name.
        name: String,
        /// From whom: their name, or [`Text::Someone`]'s words.
        who: String,
    },
    /// A file not sent or not taken, and why.
    FileRefused {
        /// The file's name.
        name: String,
        /// Why.
        why: FileError,
    },
    /// The invite link is in the clipboard (the link follows).
    LinkCopied,
    /// The invite link could not be copied: the person copies it (the link follows).
    CopyThisLink,
    /// The path a call's media takes.
    Path(CandidateType),
    /// The stats panel with no call.
    NoStatsYet,
    /// A figure not measured yet.
    Measuring,
    /// Someone without a name.
    Someone,
    /// Ourselves.
    You,
    /// A tile's caption: the person's name (or [`Text::Someone`]) and how the call is.
    Caption {
        /// Their name, if they gave one.
        name: Option<String>,
        /// Connecting, reconnecting or lost (connected says nothing).
        state: crate::core::TileState,
        /// They muted their microphone.
        muted: bool,
        /// They turned their camera off.
        camera_off: bool,
        /// They raised their hand.
        hand: bool,
    },
    /// The verification code under a picture.
    Check(String),
    /// What the verification code is for.
    CheckHelp,
    /// A device not yet named by the browser: "Camera 1", "Microphone 2".
    Device {
        /// A camera, not a microphone.
        camera: bool,
        /// Its number, from 1.
        n: usize,
    },
}

/// In the call log and in a test's failure: the English words. (The derived form, the
/// variants' names and fields, cost the bundle 948 bytes gzipped.)
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.show(Lang::En), f)
    }
}

impl Text {
    /// The words for `self` in `lang`.
    pub fn show(&self, lang: Lang) -> String {
        use crate::core::TileState;
        let l = lang;
        match self {
            Text::Starting => l
                .pick(
                    "Starting: asking for camera and microphone…",
                    "正在啟動：請求使用攝影機和麥克風…",
                    "正在启动：请求使用摄像头和麦克风…",
                )
                .into(),
            Text::Connecting => l.pick("Connecting…", "連線中…", "连接中…").into(),
            Text::Connected => l.pick("Connected.", "已連線。", "已连接。").into(),
            Text::WaitingAlone => l
                .pick(
                    "Waiting for the other person to open the page…",
                    "正在等待對方開啟這個頁面…",
                    "正在等待对方打开这个页面…",
                )
                .into(),
            Text::WaitingOtherHere => l
                .pick(
                    "The other person is here. Waiting for their call, or press Call.",
                    "對方已在這裡。等待對方來電，或按「通話」。",
                    "对方已在这里。等待对方来电，或按“通话”。",
                )
                .into(),
            Text::CallEnded => l
                .pick(
                    "Call ended. Press Call to call again.",
                    "通話已結束。按「通話」可再次撥打。",
                    "通话已结束。按“通话”可再次拨打。",
                )
                .into(),
            Text::OtherHungUp => l
                .pick(
                    "The other person hung up. Press Call to call again.",
                    "對方已掛斷。按「通話」可再次撥打。",
                    "对方已挂断。按“通话”可再次拨打。",
                )
                .into(),
            Text::RelayAway { why, calls_go_on } => {
                let why = match why {
                    RelayWhy::Unreachable => l.pick(
                        "Cannot reach the relay: is the server running?".to_owned(),
                        "無法連上中繼伺服器：伺服器有在執行嗎？".to_owned(),
                        "无法连上中继服务器：服务器在运行吗？".to_owned(),
                    ),
                    RelayWhy::ShuttingDown => l.pick(
                        "The relay is shutting down.".to_owned(),
                        "中繼伺服器正在關閉。".to_owned(),
                        "中继服务器正在关闭。".to_owned(),
                    ),
                    RelayWhy::TooBig => l.pick(
                        "The relay closed the connection: a message was too big.".to_owned(),
                        "中繼伺服器關閉了連線：有一則訊息太大。".to_owned(),
                        "中继服务器关闭了连接：有一条消息太大。".to_owned(),
                    ),
                    RelayWhy::Lost => l.pick(
                        "Lost the connection to the relay.".to_owned(),
                        "與中繼伺服器的連線中斷了。".to_owned(),
                        "与中继服务器的连接断开了。".to_owned(),
                    ),
                    RelayWhy::Closed(code) => l.pick(
                        format!("The relay closed the connection (code {code})."),
                        format!("中繼伺服器關閉了連線（代碼 {code}）。"),
                        format!("中继服务器关闭了连接（代码 {code}）。"),
                    ),
                    RelayWhy::NoAnswer => l.pick(
                        "The relay stopped answering (the network may have changed).".to_owned(),
                        "中繼伺服器沒有回應（網路可能變了）。".to_owned(),
                        "中继服务器没有响应（网络可能变了）。".to_owned(),
                    ),
                    RelayWhy::StoreDown => l.pick(
                        "The relay cannot reach the store it shares rooms through.".to_owned(),
                        "中繼伺服器連不上它用來共用房間的資料庫。".to_owned(),
                        "中继服务器连不上它用来共享房间的数据库。".to_owned(),
                    ),
                };
                let again = l.pick(
                    " Reconnecting to the relay…",
                    "正在重新連線到中繼伺服器…",
                    "正在重新连接到中继服务器…",
                );
                let on = if *calls_go_on {
                    l.pick(
                        " The call goes on meanwhile.",
                        "通話同時繼續進行。",
                        "通话同时继续进行。",
                    )
                } else {
                    ""
                };
                format!("{why}{again}{on}")
            }
            Text::NameTaken(name) => l.pick(
                format!(
                    "Somebody in this room is already called “{name}”. Type another name and \
                     press Use name."
                ),
                format!("這個房間裡已經有人叫「{name}」。請輸入別的名字，再按「使用名字」。"),
                format!("这个房间里已经有人叫“{name}”。请输入别的名字，再按“使用名字”。"),
            ),
            Text::NameInvalid => l
                .pick(
                    "That name cannot be used: it must be 1 to 64 bytes, without control \
                     characters.",
                    "不能使用這個名字：名字須為 1 到 64 位元組，且不含控制字元。",
                    "不能使用这个名字：名字须为 1 到 64 字节，且不含控制字符。",
                )
                .into(),
            Text::RoomFull => l
                .pick(
                    "This room is full. Add ?room=NAME to the address to use another room.",
                    "這個房間已滿。在網址後加上 ?room=名稱 就能使用另一個房間。",
                    "这个房间已满。在网址后加上 ?room=名称 就能使用另一个房间。",
                )
                .into(),
            Text::Knocking => l
                .pick(
                    "This room is locked. Waiting for someone in it to let you in…",
                    "這個房間已上鎖。正在等待房間裡的人讓你進來…",
                    "这个房间已上锁。正在等待房间里的人让你进来…",
                )
                .into(),
            Text::KnockRefused => l
                .pick(
                    "The people in this locked room did not let you in.",
                    "這個上鎖房間裡的人沒有讓你進來。",
                    "这个上锁房间里的人没有让你进来。",
                )
                .into(),
            Text::Removed => l
                .pick(
                    "You were removed from this room.",
                    "你已被移出這個房間。",
                    "你已被移出这个房间。",
                )
                .into(),
            Text::Passphrase { wrong: false } => l
                .pick(
                    "This room needs a passphrase: type it under Room and press Use passphrase.",
                    "這個房間需要通關密語：在「房間」下輸入，再按「使用通關密語」。",
                    "这个房间需要口令：在“房间”下输入，再按“使用口令”。",
                )
                .into(),
            Text::Passphrase { wrong: true } => l
                .pick(
                    "That is not this room's passphrase. Try again.",
                    "通關密語不對，請再試一次。",
                    "口令不对，请再试一次。",
                )
                .into(),
            Text::Refused => l
                .pick(
                    "The relay refused a request. Reload the page to try again.",
                    "中繼伺服器拒絕了一個請求。請重新載入頁面再試一次。",
                    "中继服务器拒绝了一个请求。请重新加载页面再试一次。",
                )
                .into(),
            Text::CallFailed => l
                .pick(
                    "The call could not be set up. Press Call to try again.",
                    "無法建立通話。按「通話」再試一次。",
                    "无法建立通话。按“通话”再试一次。",
                )
                .into(),
            Text::NeverAnswered => l
                .pick(
                    "The other person's page never answered the call: it may be stuck or \
                     closed. Ask them to reload it. Press Call to try again.",
                    "對方的頁面一直沒有回應通話：可能卡住或已關閉。請對方重新載入頁面，再按「通話」重試。",
                    "对方的页面一直没有响应通话：可能卡住或已关闭。请对方重新加载页面，再按“通话”重试。",
                )
                .into(),
            Text::ConnectionLost => l
                .pick(
                    "Lost the connection with someone: it could not be restored. They may have \
                     lost their network or closed the page; ask them to reload it, or check \
                     your own network.",
                    "與某人的連線中斷，且無法恢復。對方可能斷網或關閉了頁面；請對方重新載入，或檢查你自己的網路。",
                    "与某人的连接断开，且无法恢复。对方可能断网或关闭了页面；请对方重新加载，或检查你自己的网络。",
                )
                .into(),
            Text::NoPath {
                setup,
                turn_refused,
            } => no_path(l, *setup, turn_refused.as_deref()),
            Text::Media(problem) => media(l, *problem),
            Text::Screen(MediaProblem::Denied) => l
                .pick(
                    "Screen sharing was not allowed.",
                    "未獲准分享螢幕。",
                    "未获准共享屏幕。",
                )
                .into(),
            Text::Screen(_) => l
                .pick(
                    "Could not share the screen.",
                    "無法分享螢幕。",
                    "无法共享屏幕。",
                )
                .into(),
            Text::ScreenUnsupported => l
                .pick(
                    "This browser cannot share a screen.",
                    "這個瀏覽器無法分享螢幕。",
                    "这个浏览器无法共享屏幕。",
                )
                .into(),
            Text::DeviceGone { camera: true } => l
                .pick(
                    "The camera went away and there is no other.",
                    "攝影機已移除，而且沒有其他攝影機。",
                    "摄像头已移除，而且没有其他摄像头。",
                )
                .into(),
            Text::DeviceGone { camera: false } => l
                .pick(
                    "The microphone went away and there is no other.",
                    "麥克風已移除，而且沒有其他麥克風。",
                    "麦克风已移除，而且没有其他麦克风。",
                )
                .into(),
            Text::Unsupported(missing) => {
                let what = match missing {
                    Missing::PeerConnection => l.pick(
                        "This browser cannot make video calls: it has no WebRTC.",
                        "這個瀏覽器無法進行視訊通話：它不支援 WebRTC。",
                        "这个浏览器无法进行视频通话：它不支持 WebRTC。",
                    ),
                    Missing::WebSocket => l.pick(
                        "This browser cannot make video calls: it cannot reach the relay \
                         (no WebSocket).",
                        "這個瀏覽器無法進行視訊通話：它無法連上中繼伺服器（不支援 WebSocket）。",
                        "这个浏览器无法进行视频通话：它无法连上中继服务器（不支持 WebSocket）。",
                    ),
                };
                let which = l.pick(
                    " Open this page in a recent Chrome, Edge, Firefox or Safari.",
                    "請用新版的 Chrome、Edge、Firefox 或 Safari 開啟這個頁面。",
                    "请用新版的 Chrome、Edge、Firefox 或 Safari 打开这个页面。",
                );
                format!("{what}{which}")
            }
            Text::ChatEmpty => l
                .pick(
                    "Type a message first.",
                    "請先輸入訊息。",
                    "请先输入消息。",
                )
                .into(),
            Text::ChatTooLong(n, max) => l.pick(
                format!(
                    "That message is {n} characters long; the limit is {max}. Shorten it or \
                     send it in parts."
                ),
                format!("這則訊息有 {n} 個字元，上限是 {max}。請縮短或分段傳送。"),
                format!("这条消息有 {n} 个字符，上限是 {max}。请缩短或分段发送。"),
            ),
            Text::ChatNobody => l
                .pick(
                    "Nobody is in the call yet: the message was not sent.",
                    "通話中還沒有其他人：訊息沒有送出。",
                    "通话中还没有其他人：消息没有发送。",
                )
                .into(),
            Text::ChatDropped {
                who,
                why: Dropped::TooBig(n),
            } => l.pick(
                format!("{who} sent a message of {n} characters, too long to show: it was left out."),
                format!("{who} 傳來一則 {n} 個字元的訊息，太長了，沒有顯示。"),
                format!("{who} 发来一条 {n} 个字符的消息，太长了，没有显示。"),
            ),
            Text::ChatDropped {
                who,
                why: Dropped::TooFast,
            } => l.pick(
                format!("{who} is sending messages too fast: some were left out."),
                format!("{who} 傳訊息太快了：有些訊息沒有顯示。"),
                format!("{who} 发消息太快了：有些消息没有显示。"),
            ),
            Text::LinkCopied => l
                .pick(
                    "Link copied; send it to the people you want to talk to:",
                    "已複製連結；把它傳給你想通話的人：",
                    "已复制链接；把它发给你想通话的人：",
                )
                .into(),
            Text::CopyThisLink => l
                .pick(
                    "Copy this link and send it to the people you want to talk to:",
                    "複製這個連結，傳給你想通話的人：",
                    "复制这个链接，发给你想通话的人：",
                )
                .into(),
            Text::Path(kind) => match kind {
                CandidateType::Host => l.pick(
                    "Direct connection (same network).",
                    "直接連線（同一個網路）。",
                    "直接连接（同一个网络）。",
                ),
                CandidateType::Srflx => l.pick(
                    "Direct connection through NAT (found with STUN).",
                    "經過 NAT 的直接連線（由 STUN 找到）。",
                    "经过 NAT 的直接连接（由 STUN 找到）。",
                ),
                CandidateType::Prflx => l.pick(
                    "Direct connection through NAT.",
                    "經過 NAT 的直接連線。",
                    "经过 NAT 的直接连接。",
                ),
                CandidateType::Relay => l.pick(
                    "Relayed through the TURN server.",
                    "經由 TURN 伺服器轉送。",
                    "经由 TURN 服务器转发。",
                ),
            }
            .into(),
            Text::NoStatsYet => l
                .pick(
                    "Nobody is in the call: no stats yet.",
                    "通話中沒有其他人：還沒有統計資料。",
                    "通话中没有其他人：还没有统计数据。",
                )
                .into(),
            Text::Measuring => l.pick("measuring…", "測量中…", "测量中…").into(),
            Text::Someone => l.pick("Someone", "某人", "某人").into(),
            Text::FileTo { name, who } => l.pick(
                format!("{name}, to {who}"),
                format!("{name}，傳給{who}"),
                format!("{name}，发给{who}"),
            ),
            Text::FileFrom { name, who } => l.pick(
                format!("{name}, from {who}"),
                format!("{name}，來自{who}"),
                format!("{name}，来自{who}"),
            ),
            Text::FileRefused { name, why } => {
                // Integers only: formatting a float would add kilobytes to the page.
                let mb = |bytes: u64| {
                    let tenths = bytes.saturating_mul(10).div_ceil(1024 * 1024);
                    format!("{}.{} MB", tenths / 10, tenths % 10)
                };
                match why {
                    FileError::TooBig(size) => {
                        let (size, limit) = (mb(*size), mb(crate::core::files::MAX_BYTES));
                        l.pick(
                            format!("{name} is {size}: files up to {limit} can be sent."),
                            format!("{name} 有 {size}：只能傳送 {limit} 以內的檔案。"),
                            format!("{name} 有 {size}：只能发送 {limit} 以内的文件。"),
                        )
                    }
                    FileError::Empty => l.pick(
                        format!("{name} is empty."),
                        format!("{name} 是空的。"),
                        format!("{name} 是空的。"),
                    ),
                    FileError::Nobody => l.pick(
                        format!("Nobody in the call to send {name} to."),
                        format!("通話中沒有人可以接收 {name}。"),
                        format!("通话中没有人可以接收 {name}。"),
                    ),
                    FileError::Broken | FileError::Malformed => l.pick(
                        format!("{name} did not arrive whole."),
                        format!("{name} 沒有完整送達。"),
                        format!("{name} 没有完整送达。"),
                    ),
                }
            }
            Text::You => l.pick("You", "你", "你").into(),
            Text::Caption {
                name,
                state,
                muted,
                camera_off,
                hand,
            } => {
                let who = name.clone().unwrap_or_else(|| Text::Someone.show(l));
                let mut caption = match state {
                    TileState::Connected => who,
                    TileState::Connecting => {
                        l.pick(format!("{who} (connecting…)"), format!("{who}（連線中…）"), format!("{who}（连接中…）"))
                    }
                    TileState::Reconnecting => l.pick(
                        format!("{who} (reconnecting…)"),
                        format!("{who}（重新連線中…）"),
                        format!("{who}（重新连接中…）"),
                    ),
                    TileState::Lost => l.pick(
                        format!("{who} (connection lost)"),
                        format!("{who}（連線中斷）"),
                        format!("{who}（连接断开）"),
                    ),
                };
                if *muted {
                    caption.push_str(l.pick(", muted", "，已靜音", "，已静音"));
                }
                if *camera_off {
                    caption.push_str(l.pick(", camera off", "，攝影機已關閉", "，摄像头已关闭"));
                }
                if *hand {
                    caption.push_str(l.pick(", hand raised", "，舉手中", "，举手中"));
                }
                caption
            }
            Text::Check(code) => l.pick(
                format!("Check: {code}"),
                format!("核對：{code}"),
                format!("核对：{code}"),
            ),
            Text::CheckHelp => l
                .pick(
                    "You and the other person see the same symbols here. If yours differ from \
                     theirs, somebody between you can listen in: hang up.",
                    "你和對方在這裡看到的符號應該相同。如果不同，表示你們之間可能有人在竊聽：請掛斷。",
                    "你和对方在这里看到的符号应该相同。如果不同，表示你们之间可能有人在窃听：请挂断。",
                )
                .into(),
            Text::Device { camera, n } => match (camera, l) {
                (true, _) => l.pick(
                    format!("Camera {n}"),
                    format!("攝影機 {n}"),
                    format!("摄像头 {n}"),
                ),
                (false, _) => l.pick(
                    format!("Microphone {n}"),
                    format!("麥克風 {n}"),
                    format!("麦克风 {n}"),
                ),
            },
        }
    }
}

/// What the page says when ICE fails: what was configured and what to do next.
fn no_path(l: Lang, setup: IceSetup, turn_refused: Option<&str>) -> String {
    let lead = l.pick(
        "The connection failed (ICE failed): the two devices found no network path to each \
         other. ",
        "連線失敗（ICE 失敗）：兩台裝置找不到彼此之間的網路路徑。",
        "连接失败（ICE 失败）：两台设备找不到彼此之间的网络路径。",
    );
    let again = l.pick(
        " Press Call to try again.",
        "按「通話」再試一次。",
        "按“通话”再试一次。",
    );
    let advice = if let Some(url) = turn_refused {
        l.pick(
            format!(
                "The TURN server {url} refused the credentials the relay handed out: check that \
                 the relay's --turn-secret is the static-auth-secret of the TURN server (and \
                 that both clocks are right)."
            ),
            format!(
                "TURN 伺服器 {url} 拒絕了中繼伺服器發出的憑證：請確認中繼伺服器的 --turn-secret 與 TURN 伺服器的 static-auth-secret 相同（且兩邊的時鐘正確）。"
            ),
            format!(
                "TURN 服务器 {url} 拒绝了中继服务器发出的凭据：请确认中继服务器的 --turn-secret 与 TURN 服务器的 static-auth-secret 相同（且两边的时钟正确）。"
            ),
        )
    } else {
        match setup {
            IceSetup { turn: true, .. } => l.pick(
                "A TURN server was configured but no path through it worked: check that it is \
                 running and that its port is open to both devices.",
                "已設定 TURN 伺服器，但經由它的路徑都不通：請確認它正在執行，且兩台裝置都能連到它的連接埠。",
                "已配置 TURN 服务器，但经由它的路径都不通：请确认它正在运行，且两台设备都能连到它的端口。",
            ),
            IceSetup { stun: true, .. } => l.pick(
                "Only STUN is configured, and a firewall between the two networks blocks direct \
                 traffic: start the relay with a TURN server (--turn-url and --turn-secret, see \
                 the README).",
                "只設定了 STUN，而兩個網路之間的防火牆擋住了直接連線：請讓中繼伺服器使用 TURN 伺服器（--turn-url 和 --turn-secret，見 README）。",
                "只配置了 STUN，而两个网络之间的防火墙挡住了直接连接：请让中继服务器使用 TURN 服务器（--turn-url 和 --turn-secret，见 README）。",
            ),
            IceSetup { .. } => l.pick(
                "No STUN or TURN server is configured: calls connect only inside one network. \
                 Start the relay with its STUN port open (--stun-port) and a TURN server \
                 (--turn-url and --turn-secret, see the README).",
                "沒有設定 STUN 或 TURN 伺服器：通話只能在同一個網路內連線。請開放中繼伺服器的 STUN 連接埠（--stun-port）並設定 TURN 伺服器（--turn-url 和 --turn-secret，見 README）。",
                "没有配置 STUN 或 TURN 服务器：通话只能在同一个网络内连接。请开放中继服务器的 STUN 端口（--stun-port）并配置 TURN 服务器（--turn-url 和 --turn-secret，见 README）。",
            ),
        }
        .to_owned()
    };
    format!("{lead}{advice}{again}")
}

/// What the page says when the camera or microphone cannot be opened.
fn media(l: Lang, problem: MediaProblem) -> String {
    match problem {
        MediaProblem::InsecureContext => l.pick(
            "Camera and microphone are blocked because this page was opened over plain http \
             from another machine. Browsers allow them only on https:// or on localhost: open \
             the https:// address the relay printed when it started (accept its certificate \
             once). You can still see and hear the others.",
            "攝影機和麥克風被封鎖了，因為這個頁面是從另一台電腦以一般 http 開啟的。瀏覽器只在 https:// 或 localhost 上允許使用它們：請開啟中繼伺服器啟動時印出的 https:// 網址（接受一次它的憑證）。你仍然可以看到和聽到其他人。",
            "摄像头和麦克风被阻止了，因为这个页面是从另一台电脑以普通 http 打开的。浏览器只在 https:// 或 localhost 上允许使用它们：请打开中继服务器启动时打印的 https:// 网址（接受一次它的证书）。你仍然可以看到和听到其他人。",
        ),
        MediaProblem::Denied => l.pick(
            "Camera and microphone access was denied. Allow it in the browser's address bar, \
             then press Start.",
            "攝影機和麥克風的存取被拒絕了。請在瀏覽器的網址列允許存取，再按「開始」。",
            "摄像头和麦克风的访问被拒绝了。请在浏览器的地址栏允许访问，再按“开始”。",
        ),
        MediaProblem::NoDevice => l.pick(
            "No camera or microphone was found. Plug one in, then press Start. You can still \
             see and hear the other person.",
            "找不到攝影機或麥克風。請接上一個，再按「開始」。你仍然可以看到和聽到對方。",
            "找不到摄像头或麦克风。请接上一个，再按“开始”。你仍然可以看到和听到对方。",
        ),
        MediaProblem::InUse => l.pick(
            "The camera or microphone is in use by another program. Close it, then press Start.",
            "攝影機或麥克風正被其他程式使用。請關閉該程式，再按「開始」。",
            "摄像头或麦克风正被其他程序使用。请关闭该程序，再按“开始”。",
        ),
        MediaProblem::Other => l.pick(
            "Could not open the camera or microphone. Check that the browser may use them, \
             then press Start.",
            "無法開啟攝影機或麥克風。請確認瀏覽器可以使用它們，再按「開始」。",
            "无法打开摄像头或麦克风。请确认浏览器可以使用它们，再按“开始”。",
        ),
    }
    .to_owned()
}

/// The page's fixed words by their key (`data-t` and friends in `www/index.html`), in `lang`.
pub fn label(key: &str, lang: Lang) -> Option<&'static str> {
    let (en, hant, hans) = match key {
        "title" => ("Video call", "視訊通話", "视频通话"),
        "loading" => ("Loading…", "載入中…", "加载中…"),
        "people" => ("People in the call", "通話中的人", "通话中的人"),
        "you" => ("You", "你", "你"),
        "startAudio" => ("Click to start audio", "按這裡播放聲音", "点这里播放声音"),
        "controls" => ("Call controls", "通話控制", "通话控制"),
        "mute" => ("Mute", "靜音", "静音"),
        "cameraOff" => ("Camera off", "關閉攝影機", "关闭摄像头"),
        "start" => ("Start", "開始", "开始"),
        "call" => ("Call", "通話", "通话"),
        "hangUp" => ("Hang up", "掛斷", "挂断"),
        "share" => ("Share screen", "分享螢幕", "共享屏幕"),
        "stats" => ("Stats", "統計", "统计"),
        "callStats" => ("Call stats", "通話統計", "通话统计"),
        "chat" => ("Chat", "聊天", "聊天"),
        "settings" => ("Settings", "設定", "设置"),
        "moveMe" => ("Move your picture", "移動你的畫面", "移动你的画面"),
        "chatPlaceholder" => (
            "Message everyone in the call",
            "傳訊息給通話中的每個人",
            "给通话中的每个人发消息",
        ),
        "message" => ("Message", "訊息", "消息"),
        "send" => ("Send", "傳送", "发送"),
        "yourName" => ("Your name", "你的名字", "你的名字"),
        "namePlaceholder" => ("Shown to the others", "會顯示給其他人", "会显示给其他人"),
        "useName" => ("Use name", "使用名字", "使用名字"),
        "devices" => ("Camera and microphone", "攝影機和麥克風", "摄像头和麦克风"),
        "camera" => ("Camera", "攝影機", "摄像头"),
        "microphone" => ("Microphone", "麥克風", "麦克风"),
        "invite" => ("Invite", "邀請", "邀请"),
        "copyLink" => ("Copy invite link", "複製邀請連結", "复制邀请链接"),
        "newRoom" => ("New private room", "新的私人房間", "新的私人房间"),
        "language" => ("Language", "語言", "语言"),
        "hand" => ("Raise hand", "舉手", "举手"),
        "files" => ("Files", "檔案", "文件"),
        "sendFile" => ("Send a file", "傳送檔案", "发送文件"),
        "fileTo" => ("To", "給", "给"),
        "everyone" => ("Everyone", "所有人", "所有人"),
        "shortcuts" => ("Keyboard shortcuts", "鍵盤快速鍵", "键盘快捷键"),
        "noise" => ("Noise suppression", "降噪", "降噪"),
        "micLevel" => ("Microphone level", "麥克風音量", "麦克风音量"),
        "room" => ("Room", "房間", "房间"),
        "lock" => ("Lock room", "鎖上房間", "锁上房间"),
        "passphrase" => ("Passphrase", "通關密語", "口令"),
        "usePassphrase" => ("Use passphrase", "使用通關密語", "使用口令"),
        "knocks" => ("Waiting to come in", "等待進入的人", "等待进入的人"),
        "admit" => ("Let in", "讓他進來", "让他进来"),
        "refuse" => ("Turn away", "不讓他進來", "不让他进来"),
        "remove" => ("Remove from the room", "移出房間", "移出房间"),
        "react" => ("React", "表情回應", "表情回应"),
        // The reactions, by their names (`crate::core::gestures::Reaction::as_str`).
        "thumbs-up" => ("Thumbs up", "讚", "赞"),
        "clap" => ("Applause", "鼓掌", "鼓掌"),
        "laugh" => ("Laughing", "大笑", "大笑"),
        "heart" => ("Love", "愛心", "爱心"),
        "surprised" => ("Surprised", "驚訝", "惊讶"),
        "verifyHelp" => (
            "Each call shows a few symbols at the bottom of the other person's picture: read \
             them to each other. If they differ, somebody between you can listen in.",
            "每個通話都會在對方畫面的底部顯示幾個符號：請互相唸給對方聽。如果不同，表示你們之間可能有人在竊聽。",
            "每个通话都会在对方画面的底部显示几个符号：请互相念给对方听。如果不同，表示你们之间可能有人在窃听。",
        ),
        "noscript" => (
            "This page needs JavaScript and WebAssembly.",
            "這個頁面需要 JavaScript 和 WebAssembly。",
            "这个页面需要 JavaScript 和 WebAssembly。",
        ),
        _ => return None,
    };
    Some(lang.pick(en, hant, hans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TileState;

    /// One of every kind of text, with what it needs.
    fn every_text() -> Vec<Text> {
        let mut all = vec![
            Text::Starting,
            Text::Connecting,
            Text::Connected,
            Text::WaitingAlone,
            Text::WaitingOtherHere,
            Text::CallEnded,
            Text::OtherHungUp,
            Text::NameTaken("安".into()),
            Text::NameInvalid,
            Text::RoomFull,
            Text::Refused,
            Text::CallFailed,
            Text::NeverAnswered,
            Text::ConnectionLost,
            Text::ScreenUnsupported,
            Text::DeviceGone { camera: true },
            Text::DeviceGone { camera: false },
            Text::Unsupported(Missing::PeerConnection),
            Text::Unsupported(Missing::WebSocket),
            Text::ChatEmpty,
            Text::ChatTooLong(3000, 2000),
            Text::ChatNobody,
            Text::ChatDropped {
                who: "安".into(),
                why: Dropped::TooBig(262_144),
            },
            Text::ChatDropped {
                who: "安".into(),
                why: Dropped::TooFast,
            },
            Text::LinkCopied,
            Text::CopyThisLink,
            Text::FileTo {
                name: "報告".into(),
                who: "安".into(),
            },
            Text::FileFrom {
                name: "報告".into(),
                who: "安".into(),
            },
            Text::NoStatsYet,
            Text::Measuring,
            Text::Someone,
            Text::You,
            Text::Check("🐱 🌵 🚲".into()),
            Text::CheckHelp,
            Text::Device { camera: true, n: 1 },
            Text::Device {
                camera: false,
                n: 2,
            },
        ];
        for why in [
            RelayWhy::Unreachable,
            RelayWhy::ShuttingDown,
            RelayWhy::TooBig,
            RelayWhy::Lost,
            RelayWhy::Closed(4000),
            RelayWhy::NoAnswer,
            RelayWhy::StoreDown,
        ] {
            for calls_go_on in [false, true] {
                all.push(Text::RelayAway { why, calls_go_on });
            }
        }
        for why in [
            FileError::TooBig(20_000_000),
            FileError::Empty,
            FileError::Nobody,
            FileError::Broken,
            FileError::Malformed,
        ] {
            all.push(Text::FileRefused {
                name: "報告".into(),
                why,
            });
        }
        for problem in [
            MediaProblem::InsecureContext,
            MediaProblem::Denied,
            MediaProblem::NoDevice,
            MediaProblem::InUse,
            MediaProblem::Other,
        ] {
            all.push(Text::Media(problem));
            all.push(Text::Screen(problem));
        }
        for (stun, turn) in [(false, false), (true, false), (true, true)] {
            all.push(Text::NoPath {
                setup: IceSetup { stun, turn },
                turn_refused: None,
            });
        }
        all.push(Text::NoPath {
            setup: IceSetup::default(),
            turn_refused: Some("turn:example.test:3478".into()),
        });
        for kind in [
            CandidateType::Host,
            CandidateType::Srflx,
            CandidateType::Prflx,
            CandidateType::Relay,
        ] {
            all.push(Text::Path(kind));
        }
        for state in [
            TileState::Connecting,
            TileState::Connected,
            TileState::Reconnecting,
            TileState::Lost,
        ] {
            all.push(Text::Caption {
                name: None,
                state,
                muted: true,
                camera_off: true,
                hand: true,
            });
        }
        all
    }

    /// English words left in `text` (runs of three or more Latin letters), leaving out the
    /// names of things that are not translated: products, protocols, flags, the README.
    fn english_in(text: &str) -> Vec<String> {
        const NAMES: &[&str] = &[
            "WebRTC",
            "WebSocket",
            "JavaScript",
            "WebAssembly",
            "Chrome",
            "Edge",
            "Firefox",
            "Safari",
            "STUN",
            "TURN",
            "ICE",
            "NAT",
            "README",
            "http",
            "https",
            "localhost",
            "room",
            "turn",
            "url",
            "secret",
            "stun",
            "port",
            "static",
            "auth",
            "example",
            "test",
        ];
        text.split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| w.len() >= 3 && !NAMES.contains(w))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_text_has_words_in_every_language_and_no_english_is_left_in_chinese() {
        for text in every_text() {
            let en = text.show(Lang::En);
            assert!(!en.trim().is_empty(), "{text:?} has no English");
            for lang in [Lang::ZhHant, Lang::ZhHans] {
                let words = text.show(lang);
                assert!(!words.trim().is_empty(), "{text:?} has no {lang:?}");
                let left = english_in(&words);
                assert!(
                    left.is_empty(),
                    "{text:?} in {lang:?}: {left:?} in {words:?}"
                );
            }
            // What the person must act on is kept: a name, a code, a URL.
            if let Text::NameTaken(name)
            | Text::Check(name)
            | Text::ChatDropped { who: name, .. }
            | Text::FileTo { who: name, .. }
            | Text::FileRefused { name, .. } = &text
            {
                for lang in Lang::ALL {
                    assert!(text.show(lang).contains(name.as_str()));
                }
            }
        }
    }

    #[test]
    fn traditional_and_simplified_are_not_the_same_words() {
        let same: Vec<String> = every_text()
            .into_iter()
            .filter(|t| t.show(Lang::ZhHant) == t.show(Lang::ZhHans))
            .map(|t| t.show(Lang::ZhHant))
            .collect();
        // Only the few words the two scripts write alike.
        assert!(same.len() <= 4, "{same:?}");
    }

    /// Every `data-t…` key of `www/index.html`.
    fn page_keys() -> Vec<String> {
        let page = include_str!("../../www/index.html");
        let mut keys = Vec::new();
        for attr in [
            "data-t=\"",
            "data-t-label=\"",
            "data-t-placeholder=\"",
            "data-t-title=\"",
        ] {
            for (at, _) in page.match_indices(attr) {
                let rest = &page[at + attr.len()..];
                keys.push(rest[..rest.find('"').expect("closed")].to_owned());
            }
        }
        keys
    }

    #[test]
    fn every_key_of_the_page_has_words_in_every_language() {
        let keys = page_keys();
        assert!(keys.len() >= 25, "{keys:?}");
        for key in &keys {
            for lang in Lang::ALL {
                let words = label(key, lang).unwrap_or_else(|| panic!("no {key:?} in {lang:?}"));
                if lang != Lang::En {
                    let left = english_in(words);
                    assert!(left.is_empty(), "{key:?} in {lang:?}: {left:?}");
                }
            }
        }
        assert_eq!(label("no such key", Lang::En), None);
    }

    #[test]
    fn the_language_comes_from_the_address_then_the_choice_then_the_browser() {
        let browser = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(Lang::choose(None, None, &[]), Lang::En);
        assert_eq!(
            Lang::choose(None, None, &browser(&["zh-TW", "en"])),
            Lang::ZhHant
        );
        assert_eq!(Lang::choose(None, None, &browser(&["zh-CN"])), Lang::ZhHans);
        assert_eq!(Lang::choose(None, None, &browser(&["zh"])), Lang::ZhHans);
        assert_eq!(Lang::choose(None, None, &browser(&["zh-HK"])), Lang::ZhHant);
        assert_eq!(
            Lang::choose(None, None, &browser(&["zh-Hant-CN"])),
            Lang::ZhHant
        );
        assert_eq!(
            Lang::choose(None, None, &browser(&["fr-FR", "de", "zh-SG"])),
            Lang::ZhHans,
            "the first language we speak"
        );
        assert_eq!(Lang::choose(None, None, &browser(&["fr", "de"])), Lang::En);
        assert_eq!(
            Lang::choose(None, Some("zh-Hans"), &browser(&["zh-TW"])),
            Lang::ZhHans,
            "the person's choice beats the browser's"
        );
        assert_eq!(
            Lang::choose(Some("zh-hant"), Some("zh-Hans"), &[]),
            Lang::ZhHant,
            "the address beats both"
        );
        assert_eq!(
            Lang::choose(Some("klingon"), Some("garbage"), &browser(&["zh_TW"])),
            Lang::ZhHant,
            "tags we do not speak are passed over"
        );
        for lang in Lang::ALL {
            assert_eq!(Lang::from_tag(lang.tag()), Some(lang));
        }
    }
}
