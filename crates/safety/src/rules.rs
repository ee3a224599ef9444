//! The rule set: which phrases signal risk, and which phrases cancel or soften a match.
//!
//! Each rule line reads
//! `<level for the student> <signal> <level when about someone else> [framable] [agent] | <pattern>`
//! (pattern syntax in [`crate::pattern`]). `framable` rules are mentions of a topic ("suicide",
//! "self harm") that mean nothing when the student is talking about a class, a paper, a song or
//! a film; `agent` rules (violent verbs) count only when someone other than the student is named
//! before them, so "the news hit me hard" is not an assault. Modifier lines read `suppress | <pattern>` (an idiom or an innocent use: any rule
//! match it overlaps is dropped) or `cap concern | <pattern>` (hyperbole that still deserves a
//! gentle question, never the crisis script).

use std::collections::HashMap;

use domain::{CrisisLevel, CrisisSignal};

use crate::pattern::{Pattern, Span};

const RULES: &str = r#"
# --- Suicidal ideation: the wish to die or to end one's life --------------------------------
crisis ideation concern | @want to @die
crisis ideation concern | @want to be dead
crisis ideation concern | @want ^i @be ( dead / gone / never born / not alive / not here / not around )
crisis ideation concern | @want ^i had never been born
crisis ideation concern | @want ^i ( could / would / will / might )? @die
crisis ideation concern | rather @be dead
crisis ideation concern | @want to ( not be / stop ) ( alive / here / around / existing / living )
crisis ideation concern | @want to stop existing
crisis ideation concern | @want to not ( exist / existing / @be alive / wake up / live anymore )
crisis ideation concern | plan|solution|answer|option *4 @be ( not being / to not be / not to be / to stop being ) ( alive / here / around )
crisis indirect concern | done *4 not ( dropping out / quitting / leaving school / leaving college / failing ) done
crisis indirect concern | done *2 ( i do not mean / and not ) ( school / college / the class / dropping out / quitting )
crisis ideation concern | @kill ^@refl
crisis ideation concern | @end ^@poss own? life
crisis ideation concern | @take ^@poss own? life
crisis ideation concern | @end it all
crisis ideation concern | @end it ( tonight / now / soon / forever / today / already / for good )
crisis ideation concern | @think about|of @end ( it / things / everything / ^my life )
crisis ideation concern | @want to @end ( it / things / everything )
crisis ideation concern framable | suicidal
concern ideation concern framable | suicide
crisis ideation concern framable | @think about|of|on suicide
crisis ideation concern framable | considering|contemplating|considered|contemplated suicide
crisis ideation concern framable | commit|commits|committing|committed|attempt|attempted|attempting suicide
crisis ideation concern | not *3 @want to ( live / exist / @be alive / wake up )
crisis ideation concern | not *3 @want to @be ( here / around ) anymore
crisis ideation concern | not *3 @want to @be alive
crisis ideation concern | never wake up
crisis ideation concern | hope ^i ( do not / never ) wake up
crisis ideation concern | tired of ( living / @be alive / life )
crisis ideation concern | done with ( life / living )
crisis ideation concern | not worth living
crisis ideation concern | @want my life to ( end / stop / be over )
crisis ideation concern | not care if ^i ( live / @die / wake up )
crisis ideation concern | not mind if ^i ( @die / did not wake up / never woke up )
crisis ideation concern | hope ^i ( @die / get hit / crash )
crisis ideation concern | @want *3 car|bus|truck|train ( would / will / to )? hit ^me
crisis ideation concern | fine|okay|happy|glad|mind *2 if ( a / the ) car|bus|truck|train *1 hit|hits|ran|runs|killed ^me
crisis ideation concern | hope|hoping|wish ( the / my ) plane|flight|bus|train *2 crashes|crash|derails
crisis ideation concern | hope|hoping|wish ( the / my ) plane|flight *2 ( goes down / go down / going down / falls / fall out of the sky )
crisis ideation concern | hope|hoping|hoped|pray|praying ^i *2 ( do not / never / will not / would not / just do not ) wake up
crisis ideation concern | not mind|care if|when ( the / my ) plane|flight|bus|train|car *2 ( went down / goes down / go down / crashed / crashes / crash / fell / derailed / hit a tree )
crisis ideation concern | @want out of ( this / my / this whole ) life
crisis ideation concern | not *1 see ^myself ( alive / still alive / living / making it ) *2 past|by|at|in|next|through|until|to
crisis ideation concern | not *1 see ^myself *3 here|around *12 weirdly|strangely|oddly|calm|peace|peaceful|ready|relieved
crisis ideation concern | turn|turning|jerk|jerking|swerve|swerving|steer|steering ( the wheel )? into ( the / a / oncoming ) divider|wall|barrier|tree|pole|traffic|median|guardrail|pillar|truck|bridge
crisis ideation concern | @feel like dying
crisis ideation concern | @want to disappear|vanish ( forever / permanently / for good )
crisis ideation concern | better off dead
crisis ideation concern | check|checking|checked out ( for good / permanently / forever / of life / of this life )
crisis ideation concern | might as well ( @end it / @end it all / @end everything / @end ^@poss life / @die / @be dead / @kill ^@refl )
crisis ideation concern | not *1 safe ( from / with / around ) ( ^@refl / ^my own? thoughts / ^my own? mind / ^my own? head / what ^i might do )
crisis ideation concern | thought|idea|thinking|think|imagining *2 not existing|exist|@be alive|@be here|waking up *6 calm|calms|calming|comfort|comforts|comforting|peace|peaceful|relief|relieves|soothing|soothes|helps
concern ideation concern | @want to stop existing|exist
crisis self_harm concern | do something to ^@refl

# --- Indirect warnings: burden, no reason to live, goodbyes, giving things away ------------
crisis indirect concern | better off without ^@obj
crisis indirect concern | better off if ^i ( @be gone / @be dead / @be not here / @be not around / @be never born / @die / disappeared / left )
crisis indirect concern | happier|better without ^me
crisis indirect concern | care|notice|miss *3 if ^i ( @die / disappeared / @be gone / @be dead / @be not here / @be not around / @kill ^myself )
crisis indirect concern | ( no / not see any / not see a / not have any / not have a / not find any ) reason ( for me )? to ( live / @be alive / keep going / go on / keep living )
crisis indirect concern | nothing *3 to live for
crisis indirect concern | ( no / not see the / not see a / what is the ) point ( in / of ) ( living / @be alive / going on / life / staying alive )
crisis indirect concern | not ( @be / going to be ) ( around / here ) *2 ( next / much longer / for long / tomorrow / anymore )
crisis indirect concern | not *3 be ( around / here ) *2 ( next week / much longer / for long / tomorrow )
crisis indirect concern | @give away *2 ^my? stuff|things|belongings|possessions|clothes|cat|dog|games|everything
crisis indirect concern | @give all? ^my *2 stuff|things|belongings|possessions|clothes away
crisis indirect concern | @give ^my *2 stuff|things|belongings|possessions|cat|dog|pet|clothes|games|guitar|laptop|car to
crisis indirect concern | not need *3 ( anymore / where i am going / much longer )
crisis indirect concern | say|saying|said goodbye to ( everyone / everybody / people / my family / you / all )
crisis indirect concern | this is goodbye
crisis indirect concern | ( say / saying / said ) ^my? goodbyes
crisis indirect concern | goodbye forever
crisis indirect concern | last time *2 talk|talking|hear|see *1 from? me|you
concern indirect concern | hopeless|hopelessness
concern indirect concern | no hope
concern indirect concern | ( lost / losing ) *1 hope
concern indirect concern | nothing *4 get|gets|getting better
concern indirect concern | never *2 get|gets|getting better
crisis indirect concern | not @be a burden *1 ( much longer / for long / for much longer )
crisis indirect concern | ( only / one ) way out of this
crisis indirect concern | nobody ( will / would )? ( have / need ) to ( worry about / deal with / put up with / take care of / look after ) ^me *2 ( anymore / again / soon / much longer / for long )
crisis indirect concern | not ( have / need ) to ( deal with / put up with ) ^me *1 ( much longer / for much longer / for long / soon )
crisis indirect concern | not ( need to / have to )? worry about ^me *1 ( much longer / for much longer / for long / soon / after this week / after tonight )
crisis indirect crisis | gave|give|giving|given *3 stuff|things|belongings|possessions|clothes *10 thank you for everything
crisis indirect concern | better off *3 collecting|cashing|getting *2 insurance|payout
crisis indirect concern | ( life / my ) insurance *8 ( if i / when i / after i / once i ) ( @die / @be gone / @be dead / am not here )
crisis indirect concern | watch|feed|keep|adopt|take|taking|watching|keeping *3 ^my *1 cat|dog|fish|pet|pets|hamster|rabbit|bunny|bird|snake|lizard|turtle|plants *8 ( forever / for good / permanently / after i am gone / when i am gone / once i am gone / if anything happens / if something happens / in case anything happens / in case something happens )
concern indirect concern | burden to|on|for
concern indirect concern | @be a burden
concern indirect concern | @feel like a burden
concern indirect concern | can not *1 ( go on / keep going / keep living / continue ) *2 ( like this / anymore )
concern indirect concern | can not ( do / take / handle ) ( it / this / anything / everything / life ) anymore
concern indirect concern | @want ( it all / everything / the pain / all of this / all of it / it ) to ( stop / end / be over )
concern indirect concern | @want to disappear|vanish
concern indirect concern | @want to sleep forever
concern indirect concern | @feel *2 trapped|empty|worthless|numb
concern indirect concern | @be worthless
concern indirect concern | ( no / not see a / not see any / not find a ) way out
concern indirect concern | ( what is / there is no ) *1 point ( of / in )? ( anything / trying / any of this / anymore )
concern indirect concern | nobody *1 care|cares|notice|miss *1 ^@obj|if
concern indirect concern | @give up on *1 life|everything|myself
concern indirect concern | @think about|of death|dying
concern indirect concern | dark|scary|intrusive thoughts
concern indirect concern | do something stupid|drastic

# --- Plan or means: method, preparation, research ------------------------------------------
crisis plan crisis | @plan *3 ( @kill ^@refl / @end ^@poss life / @end it / suicide )
crisis plan crisis | a plan *3 @die
crisis plan crisis | wrote|write|writing|written *1 suicide|goodbye note|notes|letter|letters|message
crisis plan crisis | wrote|write|writing|written|started|starting|editing|rewriting|finished *1 letters|notes|letter|note *4 ( in case / goodbye / to everyone / for after / a real one / for real )
crisis plan crisis | ( use / using / used ) ( it / a gun / the gun / my gun / a knife / the knife / a razor / the razor ) on ^@refl
crisis plan crisis | roof|rooftop|bridge|ledge|balcony|window *6 ( going to / @want to / about to / thinking about / think about )? jump|jumping
crisis plan crisis | @pills to ( @die / @end / overdose )
crisis plan crisis | @pills *2 to @kill ^@refl
crisis plan crisis | enough @pills
crisis plan crisis | ( @pills / rope / gun / note ) ( is / are )? ready
crisis plan crisis | saving|stockpiling|stockpiled|hoarding|collecting|collected|saved|stocking *5 @pills
crisis plan crisis | @take|swallow|swallowed|swallowing *2 all|bunch|bottle|handful|whole|entire|twenty|thirty|forty|fifty|hundred|dozen|dozens|many *3 @pills
concern plan concern framable | overdose|overdosing|overdosed
crisis plan crisis | ^i *1 overdosed|overdosing
crisis plan crisis | ( @want / going / gonna / plan / planning / planned / about / try / trying / tried ) to overdose
crisis plan crisis | @take an? overdose
crisis plan crisis | overdosed|overdosing|overdose *6 breathing|unresponsive|unconscious|blue|seizing
crisis plan crisis | not waking|wake up *6 breathing|blue|pulse|lips|unresponsive
crisis plan crisis | ( is / are / was ) not breathing
crisis plan crisis | barely|hardly breathing
crisis plan crisis | lethal|deadly|fatal dose|amount
crisis plan crisis | how many @pills would it take
crisis plan crisis | how much|many @pills *4 @die|@kill|overdose|lethal|fatal|deadly|liver|organ
crisis plan crisis | drank|drink|drinking|swallowed|swallow|swallowing bleach|antifreeze|poison|detergent
crisis plan crisis | garage *8 engine|motor *1 running|on
crisis plan crisis | engine|motor *1 running|on *6 garage
crisis plan crisis | ( on / at ) ( the top of / top of / the roof of / the edge of ) *3 building|bridge|garage|tower|parking|dorm|library|hall *2 now
crisis plan crisis | figured|figure|figuring|worked|working|calculated|calculating out how much|many *2 insulin|@pills *4 enough|lethal|fatal|kill|die|overdose
crisis plan crisis | ( picture / photo / pic / image ) of a noose
crisis plan crisis | said|wrote|written|put|say|write *4 ( needed / wanted / had / have / need / want ) to say *3 letter|letters|note|notes
crisis plan crisis | bought|buy|buying|got|picked|stocked *4 @pills *8 ( not have a headache / not even have a headache / not sick / not in pain / not hurt anywhere )
crisis plan crisis | found|find|finding *4 blades|razors|noose|rope|gun *3 in|under *1 her|his|their *1 room|bag|drawer|closet|bed|car|backpack
crisis plan crisis | ( she / he / they ) ( has / have / had ) a plan *8 promise|promised|swear|swore not to tell
crisis plan crisis | hang|hanging|hanged ^@refl
crisis plan crisis | shoot|shooting ^@refl
crisis plan crisis | slit|slitting|@cut ^@poss wrists|wrist|throat
crisis plan crisis | jump|jumping|jumped off|from *2 bridge|building|roof|rooftop|balcony|cliff|overpass|garage|tower
crisis plan crisis | step|stepping|walk|walking|jump|jumping in front of *1 train|bus|truck|car|traffic
crisis plan crisis | drive|driving|crash|crashing *3 off|into *1 bridge|cliff|tree|wall|traffic|road
crisis plan crisis | crash|crashing|drive|driving *3 on purpose
crisis plan crisis | drive|driving|drove|walk|walking|swim|swimming|go|going|head|heading *6 lake|river|ocean|sea|bridge|woods|cliff|cliffs|mountains|quarry|tracks *3 ( and not come back / and never come back / and not coming back / never coming back / not coming back / and not return )
crisis plan crisis | @look *3 how|ways|methods *1 to ( @die / @kill / overdose / @end )
crisis plan crisis | painless|painlessly|quickest|easiest|fastest way|ways to @die|@kill
concern plan concern | know|knows|figured|decided|picked|chose|worked *2 how|when|where ^i *3 do it
crisis plan crisis | ^i *2 picked|chose|chosen|set|decided|pick ( the / a ) day|date
crisis plan crisis | hose|hoses|tube|tubing *6 exhaust|tailpipe
crisis plan crisis | charcoal *4 duct tape
crisis plan crisis | charcoal *8 ( do not have a grill / no grill / not even have a grill / not own a grill )
crisis plan crisis | ( playlist / songs / music / outfit / speech ) for ^my own? funeral
crisis plan crisis | planned|planning|plan ^my own? funeral
crisis plan crisis | pharmacist|pharmacists *6 how many|much *4 too many|much|lethal|fatal|deadly|kill|die
crisis plan crisis | ( forty / fifty / sixty / seventy / eighty / ninety / hundred / hundreds of ) @pills
crisis plan crisis | note|letter|letters|notes *8 ( weirdly / strangely / oddly / suddenly ) ( calm / peaceful / at peace )
crisis indirect concern | deleted|deleting|delete all ^my social media|accounts|socials *10 ( calm / at peace / peaceful / goodbye / note / letter )
crisis indirect concern | last session *6 thanks|thank *2 for trying
crisis plan crisis | exhaust|tailpipe *6 hose|hoses|tube|tubing
crisis plan crisis | gun|pistol|rifle|revolver|shotgun|glock *4 loaded *6 table|desk|lap|bed|nightstand|front|next|beside|hand|hands|counter
crisis plan crisis | loaded ^my? gun|pistol|rifle|revolver|shotgun|glock *6 table|desk|lap|bed|nightstand|front|next|beside|hand|hands|counter
concern indirect concern | permanent solution
concern plan concern | bought|buy|buying|got|get|getting *1 a gun|rope
concern plan concern | access to *1 gun|guns|pills

# --- Self-harm -----------------------------------------------------------------------------
crisis self_harm concern | @cut|@burn|@hurt|hit|hitting|punch|punching|scratch|scratching|carve|carving|bruise|starve|starving|choke|choking ^@refl
crisis self_harm concern | @cut|@burn|carve|carved|carving|scratch|scratched|scratching *1 ^@poss arms|arm|legs|leg|wrists|wrist|thighs|thigh|skin|stomach
concern self_harm concern framable | self_harm
concern self_harm concern | not @cut|cutting|self_harmed in|since|for
concern self_harm concern | clean from|of self_harm|cutting
crisis self_harm concern framable | self_harming|self_harmed
crisis self_harm concern | ^i self_harm
crisis self_harm concern | ( about / going / gonna / want / wanna / wanted ) to self_harm
crisis self_harm concern | pour|pouring|poured *2 boiling|hot|scalding *1 water|coffee|tea|oil *2 on|over ^my ( hand / hands / arm / arms / leg / legs / skin / wrist / wrists / thigh / thighs )
crisis self_harm concern | urge|urges|urged to @cut|@hurt|self_harm|@burn
crisis self_harm concern | urge|urges|urged to sh
crisis self_harm concern | used|use|using *3 compass|pin|pins|needle|needles|scissors|knife|blade|razor|glass|lighter|eraser|sharpener|tack|thumbtack|paperclip *6 on ^my wrist|wrists|arm|arms|thigh|thighs|skin|legs|stomach|hip|hips
crisis self_harm concern | used|use|using *3 compass|pin|pins|needle|needles|scissors|knife|blade|razor|glass|lighter|eraser|sharpener|tack|thumbtack|paperclip|nails|fingernails *8 into ^my wrist|wrists|arm|arms|thigh|thighs|skin|legs|stomach|hip|hips
crisis self_harm concern | ( to / i / and ) dig|digging|dug|gouge|gouging|gouged|scrape|scraping|scraped into ^my wrist|wrists|arm|arms|thigh|thighs|skin|legs|stomach|hip|hips
crisis self_harm concern | @be|started|start|keep|still|back *1 cutting
crisis self_harm concern | @cut again
crisis self_harm concern | sh again
crisis self_harm concern | @cut for the first time in
crisis self_harm concern | carve|carved|carving *3 into ^@poss arms|arm|legs|leg|wrists|wrist|thighs|thigh|skin|stomach|hip|hips
crisis self_harm concern | back to ( the / my ) blade|blades|razor|razors
crisis self_harm concern | @cut ( last night / today / yesterday / tonight )
crisis self_harm concern | relapsed|relapse *3 @cut|cutting|self_harm|self_harming
crisis self_harm concern | hide|hiding|cover|covering *3 cuts|scars|marks|burns
crisis self_harm concern | until *3 bleed|bleeds|bled|bleeding
crisis self_harm concern | make ^@refl bleed
crisis self_harm concern | ( razor / razors / blade / blades ) *3 ( hidden / hide / hiding / stash / stashed )
crisis self_harm concern | ( hidden / hide / hiding / stash / stashed ) *3 ( razor / razors / blade / blades )
crisis self_harm concern | razor|razors|blade|blades *4 ^@poss arm|arms|wrist|wrists|skin|thigh|thighs|legs
crisis self_harm concern | hit|hitting|bang|banging|banged|slam|slammed|slamming ^my head against|into|on *1 the? wall|walls|floor|door|desk|mirror *4 until|purpose|bleed|bled|bleeding|bruise|bruised|bruises
crisis self_harm concern | ^my cuts|burns *3 infected|bleeding|open|deep|fresh|new|stitches|reopened
crisis self_harm concern | hit|hitting|bang|banging|banged|slam|slammed|slamming ^my head against|into|on *1 the? wall|walls|floor|door|desk|mirror *10 ( see spots / see stars / saw spots / saw stars / get dizzy / got dizzy / black out / blacked out / pass out / passed out )
crisis self_harm concern | marks|cuts|scratches|burns *3 ^my? wrists|wrist|arms|arm|thighs|thigh|legs|stomach *6 hide|hiding|cover|covering|sleeves|hoodie|hoodies
crisis self_harm concern | bruises|bruise|bruised|marks|cuts|burns|scars|scratches *14 ( do / did / am doing / have been doing / been doing ) ( it / them / that / this ) to ^@refl

# --- Harm to others --------------------------------------------------------------------------
crisis harm_others crisis | shoot|shooting up *2 school|class|campus|building|library|dorm|party|place|office|classroom|hall|cafeteria|church|house|frat|fraternity|sorority|gym|mall|store|stadium|club|bar|mosque|synagogue|temple|lecture|lab|meeting|work
crisis harm_others crisis | bring|bringing|brought|take|taking *1 gun|knife|weapon|weapons *3 school|class|campus|dorm|work|office
crisis harm_others crisis | @feel like ( @hurt / stabbing / shooting / attacking ) *1 someone|somebody|people|everyone|him|her|them|others
crisis harm_others crisis | @want|going|@plan|@think|imagine|imagining *2 @hurt|stab|shoot|attack|poison *1 someone|somebody|people|everyone|him|her|them|others|that|those|my
crisis harm_others crisis | @think|urge|urges|imagine|imagining|fantasize|fantasizing *2 of|about|to? @hurt|hurting|stabbing|shooting|killing *1 someone|somebody|people|others|everyone|my
crisis harm_others crisis | ( gun / knife / weapon ) to ( @hurt / @kill / shoot / stab )
crisis harm_others crisis | @kill|murder|shoot|stab ( everyone / everybody / people / them all / all of them )
concern harm_others crisis | @want|going|@plan *2 ( @kill / murder / strangle / beat up / punch ) *1 him|her|them|someone|somebody|my|that|this|those
concern harm_others crisis | could ( @hurt / @kill ) *1 someone|somebody|him|her|them
concern harm_others crisis | make *1 them|him|her|everyone|everybody|people all? pay
concern harm_others crisis | make ^my? @kin|professor|professors|teacher|teachers|boss|ta|advisor|coach|landlord|manager pay
crisis harm_others crisis | make *3 pay *3 not mean|talking|joking
crisis harm_others crisis | bring|bringing|brought|take|taking *2 to school|class|campus|dorm|work|office|practice|lecture|party *6 make *2 pay
crisis harm_others crisis | floor|building plan|plans|layout|blueprint|blueprints|map|maps *10 gun|guns|ar|rifle|rifles|pistol|weapon|weapons|shoot|shooting
crisis harm_others crisis | layout|layouts|blueprint|blueprints *10 gun|guns|ar|rifle|rifles|pistol|weapon|weapons|shoot|shooting
crisis harm_others crisis | ( @think / imagined / imagining / pictured / picturing / planned ) about? what ^i ( would / id / could / will / am going to )? do to him|her|them *4 detail|details|detailed|step
crisis harm_others crisis | ( @think / imagined / imagining / pictured / picturing ) about? what ^i ( would / id / could / will )? do with *3 gun|guns|ar|rifle|pistol|weapon|weapons
crisis harm_others crisis | what id do to him|her|them *4 detail|details|detailed|step
crisis harm_others crisis | baby|infant|newborn *8 ( almost / nearly ) ( shook / shake / shaking / smothered / smother )
crisis harm_others crisis | almost|nearly|might|could *2 ( shake / shook / shaking / smother / smothered / hit / hurt / drop / dropped ) ( the / my / our / her / his )? baby|infant|newborn|toddler
crisis harm_others crisis | baby|infant|newborn|toddler *12 @want to shake|smother|suffocate|strangle|choke
crisis harm_others crisis | beat|beating|hit|hitting|punch|punching|kick|kicking|stomp|stomping|choke|choking|strangle|strangling *3 until ( he / she / they / it )? ( stops / stop / quits ) moving|breathing
crisis harm_others crisis | they|everyone|everybody|he|she|you|all|people|them *6 regret *8 @clause? ^i *1 ( have / got / made ) a plan
concern harm_others crisis | ( could / want to / wanna / going to / gonna / about to ) run|running over ^my? @kin|manager|boss|professor|coach|landlord|teacher|ta|advisor|him|her|them
crisis harm_others crisis | run|running over ( my / that / the / this )? @kin|manager|boss|professor|coach|landlord|teacher|ta|advisor|ex|him|her|them *1 @clause? *3 driving|drive|drove|sitting|parked *2 past|outside|by ( his / her / their ) house|place|apartment|home

# --- Danger or abuse (the student, or someone they name, is being hurt or threatened) -------
crisis danger concern agent | hits|hit|hitting|beats|beat|beating|chokes|choked|choking|kicks|kicked|kicking|slaps|slapped|slapping|punches|punched|punching|shoves|shoved|strangled|strangles|pushes|pushed|grabbed|grabs|abuses|abused|raped|rapes|assaulted|molested|molests|touches|touched ^@obj
crisis danger concern agent | hits|hit|beats|beat|chokes|choked|slaps|slapped|punches|punched|abuses|abused|raped|assaulted|molested my ^@kin
crisis danger concern | ^i @be raped|assaulted|molested|attacked|abused
crisis danger concern | ^i ( @be / got / get ) hit|beaten|choked|slapped|punched|kicked|pushed|strangled|grabbed|hurt by
crisis danger concern | sexually assaulted|abused|harassed
crisis danger concern | threatened|threatens|threatening ( to @kill / to @hurt / to hit / to beat / to shoot / to stab )? ^@obj
crisis danger concern | @kill|@hurt ^@obj if ^i tell|told|say|said|report|leave
crisis danger concern agent | threw|throws|throwing ( a / the / his / her / their / some )? plate|plates|bottle|bottles|glass|glasses|knife|chair|lamp|mug|cup|shoe|shoes|bat|beer|pan|dish|dishes|vase|remote|phone at ^@obj
crisis danger crisis | hurting|beating|hitting|choking|attacking|strangling|stabbing ( her / him / them / someone / somebody ) *1 ( right now / now / as we speak )
concern danger concern | said|says|told|tells|saying|telling *3 @kill|@hurt ^@obj
crisis danger concern | not *1 safe at|in *1 home|house|apartment|place|dorm|room
crisis danger concern | unsafe at|in *1 home|house|apartment|place|dorm
crisis danger concern | afraid|scared|terrified ( to go / of going ) *1 home|back
concern danger concern | afraid|scared|terrified of ^my? dad|father|mom|mother|stepdad|stepmom|boyfriend|girlfriend|partner|husband|wife|brother|uncle|ex|him|her
concern danger concern framable | abuse|abusive|abusing
crisis danger concern | locked ^@obj in|up
crisis danger concern | not let ^@obj leave
crisis danger concern | @kin|stepdad|stepfather|uncle|stepbrother *2 comes|come|came|sneaks|sneaking|coming into ^my room|bed *6 ( mom is asleep / mother is asleep / everyone is asleep / everyone else is asleep / mom is sleeping / nobody is awake / no one is home / nobody is home )
crisis danger concern | stepdad|stepfather|uncle|stepbrother *2 comes|come|came|sneaks|sneaking|coming into ^my room|bed ( at night / in the night / late at night / every night )
crisis danger crisis | carried|carrying|dragged|dragging|pulling|pulled *4 upstairs|outside|bedroom|room|car *10 ( out of it / passed out / unconscious / cannot walk / can not walk / not conscious / barely awake / blacked out / wasted )
crisis danger concern | not leave ^my apartment|room|dorm|house|place|car|home *8 angry|mad|yelling|screaming|violent|aggressive|threatening|drunk|scary
crisis danger concern | sleeping|sleep|slept|living in ^my car *8 degrees|freezing|snow|snowing|cold|below
concern danger concern | stalking|stalks|stalked|following ^@obj
crisis danger concern | keeps|keep|kept *4 ( pictures / photos / pics / videos ) of ( ^me / ^my house / ^my home / ^my apartment / ^my dorm / ^my window / ^my car / where ^i live )
crisis danger concern | locked|locks|locking|kicked|threw ^@obj out *8 degrees|freezing|snow|snowing|cold|nowhere
crisis danger concern | forced|forces|forcing ^@obj *3 sex|sexual|touch
crisis danger concern | without ^my consent
"#;

const MODIFIERS: &str = r#"
# Idioms and hyperbole around death.
suppress | @die|dying of|from embarrassment|shame|laughter|laughing|boredom|cringe|cuteness|excitement|jealousy|envy|curiosity|hunger|heat|thirst
suppress | @die laughing
suppress | ( almost / nearly ) ( @kill ^@refl / died ) *3 ( trying / carrying / lifting / running / falling / skiing / skating / biking / laughing / tripping / slipping / moving )
suppress | shoot|shooting|shot @poss shot
suppress | shoot|shooting|shot *3 email|emails|text|texts|message|messages|dm|dms|note|line|question|questions
suppress | @die *2 hair|shirt|clothes|color|colour|red|blue|pink|black|blonde|purple|green
suppress | @end things|it with
suppress | @end it *2 with
suppress | @want to live ( in / with / at / on / near / off / there / here / somewhere / alone / closer / abroad / by )
# Accidents and sport injuries are not self-harm.
suppress | @cut|@burn|@hurt|scratch ^@refl *5 cooking|shaving|chopping|slicing|kitchen|stove|oven|practice|gym|game|workout|lifting|running|skating|skiing|hiking|playing|accident|accidentally|fell|tripped|slipped|moving|lab|laughing
suppress | @cut|@burn|@hurt|scratch ^@refl ( on a / on the / on some / on my / with paper )
suppress | accidentally|accident *2 @cut|@burn|@hurt|hit|pour|poured|pouring|spill|spilled|spilt
suppress | @cut class|classes|lecture|lectures|carbs|sugar|back|costs|ties|hair|corners|school|someone|people|him|her|them
suppress | @cut *2 hair
# Everyday uses of violent verbs.
suppress | it|this|that|reality|everything|stress|sadness|grief|anxiety|panic|realization|thought|feeling|exhaustion|homesickness|loneliness|depression|tiredness|wave *1 hit|hits|hitting ^me
suppress | hit|hits|hitting me up
suppress | hit|hits|hitting me with ( the news / that / this / some / questions / a question / an idea / a lot )
suppress | @kill ( this / that / the / my / your )? presentation|exam|test|interview|game|audition|performance|speech|final|finals|essay|workout|set|shot
suppress | beat|beats|beating me ( at / in / to / by / up the / why / how )
suppress | pushed|pushes|pushing|push me to|into|toward|towards|hard|harder|forward|further
suppress | grabbed|grabs me ( a / some / coffee / lunch / food / dinner / by the hand )
suppress | it|that|this|deeply|words|story|letter|speech|gesture touched|touches me
suppress | kicked|kicks|kicking me out|off
suppress | substance|alcohol|drug|drugs|opioid|opioids abuse
suppress | overdose|overdosed|overdosing on caffeine|coffee|espresso|sugar|candy|chocolate|energy|red|monster|netflix|tiktok|anime|homework|studying|content|cuteness|pizza|food|carbs|junk|snacks|chips|cookies|fries|tacos|pasta|cake|memes|tv|shows|youtube|games|gaming|reality|drama|pie|turkey|dessert|sweets|cheese
suppress | hopeless romantic|romantics
suppress | hopeless at|with
suppress | suicide squad|doors|door|sprints|sprint|drills|runs|run
suppress | suicides
suppress | assisted suicide
suppress | around *8 trip|vacation|travel|traveling|travelling|break|conference|visiting|flight|holiday|holidays|thanksgiving|christmas|spring
suppress | here *5 transfer|transferring|graduating|graduate|moving|semester|abroad|internship|trip|break
suppress | say|saying|said goodbye *5 before|flight|flying|trip|graduation|graduating|moving|semester|summer|break|flew|internship|job|shift|camp|program|ended|over|farewell|retirement
suppress | wrote|write|writing|written *1 goodbye *8 graduating|graduation|seniors|retiring|retirement|farewell
suppress | noose *8 history|class|lecture|museum|movie|film|documentary|lynching|halloween|decoration|knot|knots|exhibit
suppress | lethal|deadly|fatal dose|doses|amount|amounts *8 lab|report|pharmacology|toxicology|lecture|homework|assignment|paper|quiz|course|exam|class
suppress | pharmacology|toxicology|pharm *8 lethal|deadly|fatal dose|doses|amount
suppress | @kill my? instagram|insta|account|tiktok|snapchat|twitter|facebook|phone|battery|vibe|buzz|plant|plants|streak|ig|alarm|clock|printer|router|laptop|computer|wifi
suppress | burden to|on|for *2 proof
suppress | financial|money|debt|tuition|student burden
suppress | @give away *5 charity|donate|donating|donation|moving|declutter|decluttering|graduation|graduating|free
suppress | @give *4 to goodwill|charity|donation|thrift|salvation
suppress | @give *6 thrift|goodwill|charity|donation|donations
suppress | way out of this|the building|room|hall|maze|level|game|lot|garage|class|lecture|dorm|house|store|mall|parking|airport|station
suppress | around|here *10 wedding|weddings|reunion|tournament|festival|concert|retreat|thanksgiving
suppress | @feel *2 empty stomach
suppress | do something stupid *2 ( like / at / at the party / in class )
suppress | locked ^@refl out
suppress | locked ^@obj out of *2 account|accounts|laptop|computer|phone|email|portal|canvas|wifi|group|chat|server|game|app
suppress | following me on
suppress | non suicidal
suppress | @kill *4 as the mafia|werewolf|imposter|impostor|killer|murderer
suppress | pharm|pharmacology|toxicology|professor|lecture|exam|quiz|class|homework *8 how much|many
suppress | joked|joking|jokes *6 jump|jumping off
suppress | cat|cats|kitten|kitty|dog|puppy|hamster *3 scratching|scratched|scratches|scratch|bit|bites|biting
suppress | @give *6 dog|cat|pet|puppy|kitten|pets|hamster|bird *10 apartment|lease|landlord|allergic|allergies|allow|allowed|moving|dorm
suppress | ready *3 pickup|pick|pharmacy|cvs|walgreens|counter
suppress | wake|waking|woke up ( late / early / on time / in time / for class / for work )
suppress | after i ( move / graduate / transfer / leave for / leave the country / leave campus / go home for / go back to )
suppress | ( say / saying / said ) ^my? goodbye|goodbyes to ( the / my / our ) lab|team|office|class|coworkers|cohort|club|professors|students|department|company|host
suppress | @cut keys|wood|fabric|paper|vegetables|onions|grass|lawns|coupons|tile|pipe|pipes|metal|glass|carpet|cake|bread
suppress | ( the / a ) day|date *4 trip|flight|wedding|party|move|moving|surgery|appointment|exam|interview|birthday|dinner|vacation|visit|graduation|ceremony|meeting|concert|game|shower|launch|presentation|defense|home|break|date|drive|test
# Hyperbole that still deserves a gentle question, never the crisis script.
cap concern | makes|made|making ^me @want to ( @die / @kill ^@refl )
cap concern | would|will @kill ^@refl if|when
cap concern | rather ( @kill ^@refl / @die ) than
cap concern | @want to @die ( every time / whenever ) *4 boss|game|level|lose|lost|dies|shots|kills|match|round
cap concern | told|tell|tells|telling|said ^me to *1 @kill ^@refl
cap concern | @kill ^yourself
cap concern | boring|embarrassing|awkward|cringe|cringy *3 ^i @want to @die
cap concern | wifi|internet|printer|router|lag|lagging|buffering *6 @kill ^@refl
"#;

/// What a rule says when it matches, before negation, tense and subject are applied.
#[derive(Debug)]
pub(crate) struct Rule {
    pub source: &'static str,
    pub patterns: Vec<Pattern>,
    pub signal: CrisisSignal,
    /// Level when the phrase is about the student.
    pub level: CrisisLevel,
    /// Level when the phrase is about someone else (reported as third-party risk).
    pub level_for_someone_else: CrisisLevel,
    /// A topic mention that a class, paper, song or film turns into nothing.
    pub framable: bool,
    /// A violent verb that needs someone (not the student) named before it as its agent.
    pub needs_agent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Suppress,
    CapAtConcern,
}

#[derive(Debug)]
pub(crate) struct Modifier {
    pub patterns: Vec<Pattern>,
    pub effect: Effect,
}

/// The compiled rule set, with rules indexed by the word they start with.
#[derive(Debug)]
pub(crate) struct RuleSet {
    pub rules: Vec<Rule>,
    pub modifiers: Vec<Modifier>,
    /// For each word, the (rule, pattern) pairs whose match can start with it.
    by_first_word: HashMap<Box<str>, Vec<(usize, usize)>>,
    /// The same index for modifiers.
    modifiers_by_first_word: HashMap<Box<str>, Vec<(usize, usize)>>,
}

/// One rule match in an utterance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'r> {
    pub rule: &'r Rule,
    pub span: Span,
}

impl RuleSet {
    pub fn compile() -> RuleSet {
        let rules: Vec<Rule> = content_lines(RULES).map(parse_rule).collect();
        let modifiers: Vec<Modifier> = content_lines(MODIFIERS).map(parse_modifier).collect();
        let by_first_word = index_by_first_word(rules.iter().map(|r| &r.patterns[..]));
        let modifiers_by_first_word =
            index_by_first_word(modifiers.iter().map(|m| &m.patterns[..]));
        RuleSet {
            rules,
            modifiers,
            by_first_word,
            modifiers_by_first_word,
        }
    }

    /// Where modifiers match in `tokens`, with their effect.
    pub fn modifier_spans(&self, tokens: &[String]) -> Vec<(Span, Effect)> {
        let mut spans = Vec::new();
        for start in 0..tokens.len() {
            let Some(candidates) = self.modifiers_by_first_word.get(tokens[start].as_str()) else {
                continue;
            };
            for &(modifier_index, pattern_index) in candidates {
                let modifier = &self.modifiers[modifier_index];
                if let Some(span) = modifier.patterns[pattern_index].match_at(tokens, start) {
                    spans.push((span, modifier.effect));
                }
            }
        }
        spans
    }

    /// Every rule match in `tokens`.
    pub fn hits<'r>(&'r self, tokens: &[String]) -> Vec<Hit<'r>> {
        let mut hits = Vec::new();
        for start in 0..tokens.len() {
            let Some(candidates) = self.by_first_word.get(tokens[start].as_str()) else {
                continue;
            };
            for &(rule_index, pattern_index) in candidates {
                let rule = &self.rules[rule_index];
                if let Some(span) = rule.patterns[pattern_index].match_at(tokens, start) {
                    hits.push(Hit { rule, span });
                }
            }
        }
        hits
    }
}

/// For each word, the (item, pattern) pairs whose match can start with it.
fn index_by_first_word<'a>(
    items: impl Iterator<Item = &'a [Pattern]>,
) -> HashMap<Box<str>, Vec<(usize, usize)>> {
    let mut index: HashMap<Box<str>, Vec<(usize, usize)>> = HashMap::new();
    for (item_index, patterns) in items.enumerate() {
        for (pattern_index, pattern) in patterns.iter().enumerate() {
            for word in pattern.first_words() {
                let entry = index.entry(word.clone()).or_default();
                if entry.last() != Some(&(item_index, pattern_index)) {
                    entry.push((item_index, pattern_index));
                }
            }
        }
    }
    index
}

fn content_lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

fn parse_rule(line: &'static str) -> Rule {
    let (head, pattern) = line
        .split_once('|')
        .unwrap_or_else(|| panic!("rule without '|': {line:?}"));
    let pattern = pattern.trim();
    let words: Vec<&str> = head.split_whitespace().collect();
    let [level, signal, other, flags @ ..] = words.as_slice() else {
        panic!("malformed rule head: {line:?}");
    };
    if let Some(flag) = flags.iter().find(|f| !matches!(**f, "framable" | "agent")) {
        panic!("unknown rule flag {flag:?} in {line:?}");
    }
    Rule {
        source: pattern,
        patterns: Pattern::compile_all(pattern),
        signal: parse_signal(signal, line),
        level: parse_level(level, line),
        level_for_someone_else: parse_level(other, line),
        framable: flags.contains(&"framable"),
        needs_agent: flags.contains(&"agent"),
    }
}

fn parse_modifier(line: &'static str) -> Modifier {
    let (head, pattern) = line
        .split_once('|')
        .unwrap_or_else(|| panic!("modifier without '|': {line:?}"));
    let effect = match head.trim() {
        "suppress" => Effect::Suppress,
        "cap concern" => Effect::CapAtConcern,
        other => panic!("unknown modifier effect {other:?} in {line:?}"),
    };
    Modifier {
        patterns: Pattern::compile_all(pattern.trim()),
        effect,
    }
}

fn parse_level(word: &str, line: &str) -> CrisisLevel {
    match word {
        "crisis" => CrisisLevel::Crisis,
        "concern" => CrisisLevel::Concern,
        _ => panic!("unknown level {word:?} in {line:?}"),
    }
}

fn parse_signal(word: &str, line: &str) -> CrisisSignal {
    match word {
        "ideation" => CrisisSignal::SuicidalIdeation,
        "plan" => CrisisSignal::PlanOrMeans,
        "self_harm" => CrisisSignal::SelfHarm,
        "harm_others" => CrisisSignal::HarmToOthers,
        "danger" => CrisisSignal::DangerOrAbuse,
        "indirect" => CrisisSignal::IndirectWarning,
        _ => panic!("unknown signal {word:?} in {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_and_modifier_compiles() {
        let set = RuleSet::compile();
        assert!(set.rules.len() > 100);
        assert!(set.modifiers.len() > 20);
    }
}
